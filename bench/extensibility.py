"""The extensibility benchmark: a new CRD's time to served, custom vs built-in creates/s, a webhook's cost.

Usage: `.venv/bin/python bench/extensibility.py [--duration S] [--crds N] [--storage sqlite|memory]
[--json FILE]` (also part of `make bench`). It needs `wrk` on PATH.

One run, in order, everything on 127.0.0.1 against one `timoner server
--port 0` (temp data dir):

1. **CRD to served**: creates CRDs one by one, each in a group of its own,
   with a realistic schema (required fields, defaults, an enum, a pattern,
   bounds, one CEL `x-kubernetes-validations` rule, the status and scale
   subresources, printer columns). For each, from the start of its POST,
   pollers (own connections, every 5 ms, the first try right after the POST
   returns) time (a) the first 200 of a namespaced list of its resources,
   (b) `Established=True` in its status, (c) its group in `/apis` discovery
   and its path in `/openapi/v3`. (c) is polled in a second round of
   `--crds` CRDs, not next to (b): the first `/openapi/v3` after a change
   rebuilds the documents on the server's event loop (15-30 ms), which would
   delay the status write that (b) waits for. So round A times (a) and (b),
   round B (a) and (c); p50/p99/max from the POST's start, and (a) also
   from the POST's return.
2. **Creates/s, custom vs built-in**: wrk POSTs ConfigMaps (as
   `bench/api.py`: unique names, a 512-byte data value) and custom
   resources of a CRD with that schema (the same 512-byte value in a spec
   field), and of the same CRD without its CEL rule, at 1 client (`-t1 -c1`)
   and 32 (`-t2 -c32`), `--duration` seconds each.
3. **Admission webhook cost**: if `mutatingwebhookconfigurations` are in
   discovery, starts an HTTPS AdmissionReview server in a separate process
   (uvicorn, uvloop, its own CA made with `cryptography`, the CA's PEM in
   `caBundle`) answering `allowed: true` with a JSONPatch that adds a label,
   registers a MutatingWebhookConfiguration for ConfigMap creates in
   namespaces labelled `bench-webhook=on` only, and compares ConfigMap
   creates/s and latency in such a namespace with a namespace without the
   label, at 1 and 32 clients. The webhook server counts the reviews it
   answered; fewer reviews than hooked creates, or a hooked ConfigMap
   without the label, is an error. Without webhooks served the phase is
   skipped and says so.

It prints a table (figure, value, goal, met) and the JSON (stdout, or
`--json FILE`). Slowness never fails the run: the exit code is non-zero only
when something is broken (a process does not start or dies, a request
errors, a CRD is never served, a webhook is not called).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import ipaddress
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wrk  # noqa: E402
import orjson  # noqa: E402
from _procs import StartError, TimonerServer, alive, free_port  # noqa: E402
from _rawhttp import Connection, Endpoint, HTTPError  # noqa: E402
from _watch import percentiles  # noqa: E402
from api import PAYLOAD, Broken, _check, _run_async, configmap_body, finish, log, machine, print_table  # noqa: E402

NS_CM, NS_CR, NS_CR_NOCEL = "bench-cm", "bench-cr", "bench-cr-nocel"
NS_CRD = "bench-crd"
NS_HOOKED, NS_PLAIN = "bench-hooked", "bench-plain"
HOOK_LABEL = ("bench-webhook", "on")
ADDED_LABEL = ("admitted-by", "bench-webhook")
KIND, PLURAL = "Widget", "widgets"
CEL_RULE = {"rule": "self.replicas <= 50 || self.mode == 'Safe'",
            "message": "more than 50 replicas need mode Safe"}
POLL_S = 0.005

GOALS = {  # figure key -> (comparison, threshold, text)
    "crd_served_after_return_p99_ms": ("<=", 100, "<= 100 ms"),
    "custom_vs_builtin_c32": (">=", 0.5, ">= 0.5"),
    "webhook_added_p50_ms_c1": ("<=", 5, "<= 5 ms"),
}


# -- objects ----------------------------------------------------------------------------------


def crd_body(group: str, *, cel: bool = True) -> dict:
    """A CRD of kind Widget in `group`, served and stored as v1, with a realistic schema."""
    spec: dict = {
        "type": "object",
        "required": ["image", "replicas"],
        "properties": {
            "image": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9./:_-]*$", "maxLength": 200},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1},
            "mode": {"type": "string", "enum": ["Fast", "Safe", "Off"], "default": "Safe"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 8080},
            "note": {"type": "string", "maxLength": 1024},
            "tags": {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 63}},
        },
    }
    if cel:
        spec["x-kubernetes-validations"] = [CEL_RULE]
    status = {"type": "object", "properties": {
        "replicas": {"type": "integer"},
        "readyReplicas": {"type": "integer"},
        "phase": {"type": "string", "enum": ["Pending", "Running", "Failed"]},
    }}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": KIND, "listKind": KIND + "List",
                      "shortNames": ["wdg"]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": spec, "status": status}}},
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [
                    {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }


def widget_body(group: str, name: str) -> str:
    """A Widget create body: mode and port left to the defaults, the 512-byte value of bench/api.py in `note`."""
    return ('{"apiVersion":"' + group + '/v1","kind":"' + KIND + '","metadata":{"name":"' + name + '"},'
            '"spec":{"image":"registry.example/app:1.2.3","replicas":3,"tags":["a","b"],"note":"'
            + PAYLOAD + '"}}')


def namespace_body(name: str, labels: dict | None = None) -> bytes:
    meta: dict = {"name": name}
    if labels:
        meta["labels"] = labels
    return orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})


# -- small helpers ------------------------------------------------------------------------------


async def _req(conn: Connection, method: str, path: str, body: bytes | None = None, *,
               expect: tuple[int, ...] = (200, 201), what: str = "") -> dict:
    resp = await conn.request(method, path, body)
    if resp.status not in expect:
        raise Broken(f"{what or method + ' ' + path}: {resp.status} {resp.body[:400]!r}")
    return orjson.loads(resp.body) if resp.body else {}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _summary(values_ms: list[float]) -> dict:
    p = percentiles(values_ms)
    return {"p50": p.get("p50"), "p99": p.get("p99"), "max": round(max(values_ms), 2) if values_ms else None,
            "min": round(min(values_ms), 2) if values_ms else None}


async def _wait_established(conn: Connection, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = await _req(conn, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        if _established(crd):
            return
        await asyncio.sleep(POLL_S)
    raise Broken(f"CRD {name} not Established after {timeout:g}s")


def _established(crd: dict) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


# -- phase 1: CRD to served ---------------------------------------------------------------------


async def _poll(ep: Endpoint, check, start: asyncio.Event, deadline: float) -> tuple[float, int]:
    """Calls `check(conn)` once `start` is set, then every 5 ms until it is true; the perf_counter then
    and the number of tries."""
    conn = await Connection(ep).connect()
    try:
        await start.wait()
        tries = 0
        while True:
            tries += 1
            if await check(conn):
                return time.perf_counter(), tries
            if time.monotonic() > deadline:
                raise Broken("timed out")
            await asyncio.sleep(POLL_S)
    finally:
        conn.close()


async def _crd_to_served(ep: Endpoint, count: int, timeout: float = 30.0) -> dict:
    """Two rounds of `count` CRDs: round A polls list + Established, round B list + discovery; see the
    module docstring for why they are not polled together."""
    conn = await Connection(ep).connect()
    try:
        await _req(conn, "POST", "/api/v1/namespaces", namespace_body(NS_CRD), what="namespace")
        rows = []
        for i in range(2 * count):
            second = i >= count
            group = f"g{i:03d}.served.bench.timoner.dev"
            name = f"{PLURAL}.{group}"
            list_path = f"/apis/{group}/v1/namespaces/{NS_CRD}/{PLURAL}"

            async def listed(c: Connection, path=list_path) -> bool:
                resp = await c.request("GET", path)
                if resp.status not in (200, 404):
                    raise Broken(f"GET {path}: {resp.status} {resp.body[:300]!r}")
                return resp.status == 200

            async def established(c: Connection, name=name) -> bool:
                return _established(await _req(c, "GET", f"/apis/apiextensions.k8s.io/v1/"
                                                          f"customresourcedefinitions/{name}"))

            async def discovered(c: Connection, group=group) -> bool:
                apis = await _req(c, "GET", "/apis")
                if group not in {g["name"] for g in apis.get("groups", [])}:
                    return False
                v3 = await _req(c, "GET", "/openapi/v3")
                return f"apis/{group}/v1" in v3.get("paths", {})

            start = asyncio.Event()
            deadline = time.monotonic() + timeout
            checks = (("served", listed), ("discovery", discovered) if second else ("established", established))
            pollers = {k: asyncio.create_task(_poll(ep, f, start, deadline)) for k, f in checks}
            await asyncio.sleep(0.02)  # the pollers' connections are up
            t0 = time.perf_counter()
            try:
                await _req(conn, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                           orjson.dumps(crd_body(group)), what=f"creating CRD {name}")
                t_return = time.perf_counter()
                start.set()
                done = {k: await t for k, t in pollers.items()}
            except Broken as exc:
                for t in pollers.values():
                    t.cancel()
                raise Broken(f"CRD {name}: {exc}") from None
            row = {"round": "B" if second else "A", "create_ms": _ms(t_return - t0),
                   "served_ms": _ms(done["served"][0] - t0),
                   "served_after_return_ms": _ms(done["served"][0] - t_return),
                   "served_tries": done["served"][1]}
            for key in ("established", "discovery"):
                if key in done:
                    row[f"{key}_ms"] = _ms(done[key][0] - t0)
                    row[f"{key}_tries"] = done[key][1]
            rows.append(row)
    finally:
        conn.close()
    out = {"crds": 2 * count, "per_crd": rows}
    for key in ("create_ms", "served_ms", "served_after_return_ms", "established_ms", "discovery_ms"):
        out[key] = _summary([r[key] for r in rows if key in r])
    out["served_on_first_try"] = sum(1 for r in rows if r["served_tries"] == 1)
    for key in ("established", "discovery"):
        out[f"{key}_tries_median"] = statistics.median(r[f"{key}_tries"] for r in rows if f"{key}_tries" in r)
    return out


# -- phase 2: creates/s -------------------------------------------------------------------------


async def _setup_crd(ep: Endpoint, group: str, namespace: str, *, cel: bool) -> None:
    conn = await Connection(ep).connect()
    try:
        await _req(conn, "POST", "/api/v1/namespaces", namespace_body(namespace), what="namespace")
        crd = crd_body(group, cel=cel)
        await _req(conn, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", orjson.dumps(crd),
                   what=f"creating CRD {crd['metadata']['name']}")
        await _wait_established(conn, crd["metadata"]["name"])
        path = f"/apis/{group}/v1/namespaces/{namespace}/{PLURAL}"
        # One create checked by hand: the defaults are applied, the CEL rule (if any) refuses a bad object.
        made = await _req(conn, "POST", path, widget_body(group, "probe").encode(), what=f"probe {group}")
        if made["spec"].get("mode") != "Safe" or made["spec"].get("port") != 8080:
            raise Broken(f"{group}: defaults not applied: {made['spec']}")
        bad = orjson.loads(widget_body(group, "too-many"))
        bad["spec"].update(replicas=60, mode="Fast")
        resp = await conn.request("POST", path, orjson.dumps(bad))
        if resp.status != (422 if cel else 201):
            raise Broken(f"{group}: a Widget breaking the CEL rule got {resp.status} (CEL rule: {cel})")
    finally:
        conn.close()


def _creates(server: TimonerServer, ep: Endpoint, args: argparse.Namespace, errors: list[str]) -> dict:
    cr_group, nocel_group = "widgets.bench.timoner.dev", "plain.bench.timoner.dev"
    _run_async(_setup_crd(ep, cr_group, NS_CR, cel=True))
    _run_async(_setup_crd(ep, nocel_group, NS_CR_NOCEL, cel=False))
    _run_async(_namespaces(ep, [(NS_CM, None)]))
    targets = [
        ("configmaps", f"/api/v1/namespaces/{NS_CM}/configmaps", configmap_body("\0")),
        ("custom", f"/apis/{cr_group}/v1/namespaces/{NS_CR}/{PLURAL}", widget_body(cr_group, "\0")),
        ("custom, no CEL", f"/apis/{nocel_group}/v1/namespaces/{NS_CR_NOCEL}/{PLURAL}",
         widget_body(nocel_group, "\0")),
    ]
    runs: dict[str, _wrk.WrkResult] = {}
    for t, c in ((1, 1), (2, 32)):
        for what, path, body in targets:
            label = f"{what} c{c}"
            log(f"{label}: wrk -t{t} -c{c} -d{args.duration:g}s POST {path}")
            head, tail = body.split("\0")
            script = _wrk.create_script(server.token, head, tail, f"c{c}")
            runs[label] = _check(_wrk.run(label, server.url + path, script, threads=t, connections=c,
                                          duration=args.duration), errors)
    out: dict = {"wrk": {k: v.as_dict() for k, v in runs.items()},
                 "body_bytes": {"configmap": len(configmap_body("c32-1-12345")),
                                "custom": len(widget_body(cr_group, "c32-1-12345"))}}
    for c in (1, 32):
        cm, cr, nocel = runs[f"configmaps c{c}"], runs[f"custom c{c}"], runs[f"custom, no CEL c{c}"]
        out[f"configmaps_per_s_c{c}"] = round(cm.rate, 1)
        out[f"custom_per_s_c{c}"] = round(cr.rate, 1)
        out[f"custom_nocel_per_s_c{c}"] = round(nocel.rate, 1)
        out[f"custom_vs_builtin_c{c}"] = round(cr.rate / cm.rate, 3) if cm.rate else None
        out[f"custom_vs_nocel_c{c}"] = round(cr.rate / nocel.rate, 3) if nocel.rate else None
    return out


async def _namespaces(ep: Endpoint, names: list[tuple[str, dict | None]]) -> None:
    conn = await Connection(ep).connect()
    try:
        for name, labels in names:
            await _req(conn, "POST", "/api/v1/namespaces", namespace_body(name, labels), what=f"namespace {name}")
    finally:
        conn.close()


# -- phase 3: admission webhook -----------------------------------------------------------------


def make_certs(ip: str = "127.0.0.1") -> tuple[bytes, bytes, bytes]:
    """(CA cert PEM, serving cert PEM for `ip`, serving key PEM), made with `cryptography`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-webhook-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def serve_webhook(port: int, cert: str, key: str) -> None:
    """The webhook process: `POST /mutate` answers an AdmissionReview with allowed + a JSONPatch adding
    a label; `GET /count` says how many reviews were answered."""
    import uvicorn

    label_key, label_value = ADDED_LABEL
    answered = 0
    clients: set = set()  # (host, port) of each connection the API server opened

    def patch_for(review: dict) -> str:
        labels = ((review["request"].get("object") or {}).get("metadata") or {}).get("labels")
        ops = ([{"op": "add", "path": f"/metadata/labels/{label_key}", "value": label_value}] if labels is not None
               else [{"op": "add", "path": "/metadata/labels", "value": {label_key: label_value}}])
        return base64.b64encode(orjson.dumps(ops)).decode()

    async def app(scope, receive, send) -> None:
        nonlocal answered
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        if scope["method"] == "POST" and scope["path"] == "/mutate":
            review = orjson.loads(b"".join(chunks))
            body = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
                "uid": review["request"]["uid"], "allowed": True, "patchType": "JSONPatch",
                "patch": patch_for(review)}})
            answered += 1
            clients.add(tuple(scope.get("client") or ()))
            status = 200
        elif scope["path"] == "/count":
            body, status = orjson.dumps({"answered": answered, "connections": len(clients)}), 200
        else:
            body, status = b"{}", 404
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, ssl_certfile=cert, ssl_keyfile=key, log_level="warning",
                access_log=False, loop="uvloop", http="httptools", lifespan="off")


class WebhookProcess:
    """`serve_webhook` in a child process of its own, on a free port; `ca_bundle` for the configuration."""

    def __init__(self, workdir: Path) -> None:
        ca, cert, key = make_certs()
        self.ca_pem = ca
        self.ca_bundle = base64.b64encode(ca).decode()
        self.cert, self.key = workdir / "webhook.crt", workdir / "webhook.key"
        self.cert.write_bytes(cert)
        self.key.write_bytes(key)
        (workdir / "webhook-ca.crt").write_bytes(ca)
        self.ca_file = str(workdir / "webhook-ca.crt")
        self.log = workdir / "webhook.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-webhook", str(self.port),
               str(self.cert), str(self.key)]
        with open(self.log, "wb") as log_file:
            self.proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"webhook server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                self.answered()
                return
            except (OSError, HTTPError):
                time.sleep(0.05)
        self.stop()
        raise StartError(f"webhook server not answering after {timeout:g}s")

    def answered(self) -> int:
        return self.counts()["answered"]

    def counts(self) -> dict:
        """{"answered": reviews answered, "connections": connections they came on} so far."""
        async def get() -> dict:
            conn = await Connection(Endpoint.from_url(self.url, ca_file=self.ca_file)).connect()
            try:
                resp = await conn.request("GET", "/count")
            finally:
                conn.close()
            return orjson.loads(resp.body)
        return _run_async(get())

    def cpu_s(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self.proc is not None and alive(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def _webhooks_served(ep: Endpoint) -> bool:
    conn = await Connection(ep).connect()
    try:
        resp = await conn.request("GET", "/apis/admissionregistration.k8s.io/v1")
    finally:
        conn.close()
    if resp.status == 404:
        return False
    if resp.status != 200:
        raise Broken(f"discovery of admissionregistration.k8s.io/v1: {resp.status} {resp.body[:300]!r}")
    return "mutatingwebhookconfigurations" in {r["name"] for r in orjson.loads(resp.body).get("resources", [])}


async def _register_webhook(ep: Endpoint, hook: WebhookProcess, timeout: float = 30.0) -> float:
    """Registers the configuration; returns the seconds until a ConfigMap create in the hooked namespace
    comes back labelled (the configuration is in effect)."""
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "bench-add-label"},
        "webhooks": [{
            "name": "label.bench.timoner.dev",
            "clientConfig": {"url": hook.url + "/mutate", "caBundle": hook.ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": dict([HOOK_LABEL])},
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
            "timeoutSeconds": 10,
        }],
    }
    conn = await Connection(ep).connect()
    try:
        t0 = time.perf_counter()
        await _req(conn, "POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
                   orjson.dumps(config), what="creating the MutatingWebhookConfiguration")
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline:
            n += 1
            made = await _req(conn, "POST", f"/api/v1/namespaces/{NS_HOOKED}/configmaps",
                              configmap_body(f"probe-{n}").encode(), what="probe ConfigMap")
            if (made["metadata"].get("labels") or {}).get(ADDED_LABEL[0]) == ADDED_LABEL[1]:
                return time.perf_counter() - t0
            await asyncio.sleep(POLL_S)
        raise Broken(f"the webhook's label never appeared on ConfigMaps in {NS_HOOKED} after {timeout:g}s")
    finally:
        conn.close()


def _drained(hook: WebhookProcess, timeout: float = 60.0) -> int:
    """The reviews answered once the count stops moving: wrk's last requests, still queued in the API
    server when wrk exits, are served before the configuration goes (or they would fail closed)."""
    last, deadline = hook.answered(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = hook.answered()
        if now == last:
            return now
        last = now
    raise Broken(f"the webhook was still being called {timeout:g}s after the last wrk phase")


async def _delete_webhook(ep: Endpoint) -> None:
    conn = await Connection(ep).connect()
    try:
        await _req(conn, "DELETE", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                   "bench-add-label", what="deleting the MutatingWebhookConfiguration")
    finally:
        conn.close()


async def _names(ep: Endpoint, namespace: str, selector: str) -> list[str]:
    """Names of the ConfigMaps of `namespace` that `selector` (a label selector) picks."""
    conn = await Connection(ep).connect()
    try:
        got = await _req(conn, "GET", f"/api/v1/namespaces/{namespace}/configmaps?labelSelector={selector}",
                         what=f"listing {namespace}")
    finally:
        conn.close()
    return [i["metadata"]["name"] for i in got["items"]]


def _webhook_cost(server: TimonerServer, ep: Endpoint, workdir: Path, args: argparse.Namespace,
                  errors: list[str]) -> dict:
    if not _run_async(_webhooks_served(ep)):
        log("admissionregistration.k8s.io/v1 mutatingwebhookconfigurations are not served: webhook phase skipped")
        return {"skipped": "admissionregistration.k8s.io/v1 mutatingwebhookconfigurations not in discovery"}
    _run_async(_namespaces(ep, [(NS_HOOKED, dict([HOOK_LABEL])), (NS_PLAIN, None)]))
    hook = WebhookProcess(workdir)
    log(f"starting the webhook server at {hook.url}")
    hook.start()
    assert hook.proc is not None
    results_pid = hook.proc.pid
    try:
        ready_s = _run_async(_register_webhook(ep, hook))
        log(f"  configuration in effect {ready_s * 1000:.0f} ms after its create")
        head, tail = configmap_body("\0").split("\0")
        runs: dict[str, _wrk.WrkResult] = {}
        answered0, cpu0 = hook.answered(), hook.cpu_s()
        for t, c in ((1, 1), (2, 32)):
            for what, ns in (("no webhook", NS_PLAIN), ("webhook", NS_HOOKED)):
                label = f"{what} c{c}"
                log(f"{label}: wrk -t{t} -c{c} -d{args.duration:g}s POST ConfigMaps in {ns}")
                script = _wrk.create_script(server.token, head, tail, f"c{c}")
                runs[label] = _check(_wrk.run(label, server.url + f"/api/v1/namespaces/{ns}/configmaps", script,
                                              threads=t, connections=c, duration=args.duration), errors)
        answered = _drained(hook) - answered0
        cpu = hook.cpu_s() - cpu0
        connections = hook.counts()["connections"]
        _run_async(_delete_webhook(ep))
        hooked = runs["webhook c1"].requests + runs["webhook c32"].requests
        if answered < hooked:
            errors.append(f"webhook answered {answered} reviews for {hooked} hooked creates")
        # Every ConfigMap wrk created in the hooked namespace (c1-*, c32-*) carries the label; none of
        # the other namespace does.
        unlabelled = [n for n in _run_async(_names(ep, NS_HOOKED, "!" + ADDED_LABEL[0]))
                      if n.startswith(("c1-", "c32-"))]
        if unlabelled:
            errors.append(f"{len(unlabelled)} ConfigMaps created in {NS_HOOKED} lack the webhook's label, "
                          f"e.g. {unlabelled[0]}")
        labelled = _run_async(_names(ep, NS_PLAIN, ADDED_LABEL[0]))
        if labelled:
            errors.append(f"{len(labelled)} ConfigMaps created in {NS_PLAIN} have the webhook's label")
        if not hook.alive():
            errors.append("the webhook server died during the run")
    finally:
        hook.stop()
    out: dict = {"wrk": {k: v.as_dict() for k, v in runs.items()}, "configuration_ready_ms": _ms(ready_s),
                 "reviews_answered": answered, "hooked_creates": hooked, "webhook_server_cpu_s": round(cpu, 2),
                 "webhook_connections": connections,
                 "webhook_server_pid": results_pid}
    for c in (1, 32):
        plain, hooked_run = runs[f"no webhook c{c}"], runs[f"webhook c{c}"]
        out[f"plain_per_s_c{c}"] = round(plain.rate, 1)
        out[f"webhook_per_s_c{c}"] = round(hooked_run.rate, 1)
        out[f"webhook_vs_plain_c{c}"] = round(hooked_run.rate / plain.rate, 3) if plain.rate else None
        for p in ("p50", "p99"):
            out[f"webhook_added_{p}_ms_c{c}"] = round(
                (hooked_run.latency_us[p] - plain.latency_us[p]) / 1000, 3)
    return out


# -- the run ------------------------------------------------------------------------------------


def _met(key: str, value) -> str:
    if key not in GOALS or value is None:
        return ""
    op, threshold, _ = GOALS[key]
    ok = value >= threshold if op == ">=" else value <= threshold
    return "yes" if ok else "NO"


def table(results: dict) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []

    def add(title: str, value: str, key: str = "") -> None:
        goal = GOALS[key][2] if key in GOALS else ""
        rows.append((title, value, goal, _met(key, _lookup(results, key)) if key else ""))

    crd = results.get("crd")
    if crd:
        n = crd["crds"]
        for key, title, k in (("create_ms", "CRD create (POST) returns", n),
                              ("served_ms", "CRD POST start -> list of its resources 200", n),
                              ("established_ms", "CRD POST start -> Established=True", n // 2),
                              ("discovery_ms", "CRD POST start -> in /apis and /openapi/v3", n // 2)):
            s = crd[key]
            tries = crd.get(key.replace("_ms", "_tries_median"))
            add(f"{title}, p50 / p99 / max ({k} CRDs)", f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ms"
                + (f"  (median {tries:g} polls)" if tries is not None else ""))
        s = crd["served_after_return_ms"]
        add("CRD POST return -> list 200, p99", f"{s['p99']:.1f} ms  (p50 {s['p50']:.1f}, max {s['max']:.1f}; "
            f"{crd['served_on_first_try']}/{n} on the first try)", "crd_served_after_return_p99_ms")
    cr = results.get("creates")
    if cr:
        w = cr["wrk"]

        def lat(label: str) -> str:
            r = w[label]
            return f"{r['rate_per_s']:,.0f}/s  (p50 {r['latency_ms']['p50']:.2f} / p99 {r['latency_ms']['p99']:.2f} ms)"

        for c in (1, 32):
            clients = "1 client" if c == 1 else "32 clients"
            add(f"ConfigMap creates, {clients}", lat(f"configmaps c{c}"))
            add(f"custom resource creates (CEL rule), {clients}", lat(f"custom c{c}"))
            add(f"custom resource creates, no CEL, {clients}", lat(f"custom, no CEL c{c}"))
            add(f"custom / ConfigMap, {clients}", f"{cr[f'custom_vs_builtin_c{c}']:.2f}", f"custom_vs_builtin_c{c}")
            add(f"with CEL / without, {clients}", f"{cr[f'custom_vs_nocel_c{c}']:.2f}")
    wh = results.get("webhook")
    if wh and "skipped" in wh:
        add("mutating webhook", "skipped: " + wh["skipped"])
    elif wh:
        w = wh["wrk"]
        for c in (1, 32):
            clients = "1 client" if c == 1 else "32 clients"
            for what in ("no webhook", "webhook"):
                r = w[f"{what} c{c}"]
                add(f"ConfigMap creates, {what}, {clients}",
                    f"{r['rate_per_s']:,.0f}/s  (p50 {r['latency_ms']['p50']:.2f} / p99 {r['latency_ms']['p99']:.2f} ms)")
            add(f"webhook adds, p50 / p99, {clients}",
                f"{wh[f'webhook_added_p50_ms_c{c}']:.2f} / {wh[f'webhook_added_p99_ms_c{c}']:.2f} ms",
                f"webhook_added_p50_ms_c{c}")
        add("reviews answered / hooked creates", f"{wh['reviews_answered']:,} / {wh['hooked_creates']:,}"
            f"  (on {wh['webhook_connections']:,} connections)")
    return rows


def _lookup(results: dict, key: str):
    for part in ("crd", "creates", "webhook"):
        sub = results.get(part) or {}
        if key == "crd_served_after_return_p99_ms" and part == "crd" and sub:
            return sub["served_after_return_ms"]["p99"]
        if key in sub:
            return sub[key]
    return None


def run(args: argparse.Namespace, workdir: Path, results: dict, errors: list[str]) -> None:
    server = TimonerServer(workdir, storage=args.storage)
    log(f"starting timoner server (storage: {args.storage})")
    server.start()
    results["pids"] = {"server": server.pid}
    try:
        ep = Endpoint.from_url(server.url, ca_file=server.ca_file, token=server.token)
        log(f"CRD to served: two rounds of {args.crds} CRDs, one by one")
        results["crd"] = _run_async(_crd_to_served(ep, args.crds))
        c = results["crd"]
        log(f"  served p50/p99 {c['served_ms']['p50']}/{c['served_ms']['p99']} ms, established "
            f"{c['established_ms']['p50']}/{c['established_ms']['p99']} ms, discovery "
            f"{c['discovery_ms']['p50']}/{c['discovery_ms']['p99']} ms")
        results["creates"] = _creates(server, ep, args, errors)
        if not args.skip_webhook:
            results["webhook"] = _webhook_cost(server, ep, workdir, args, errors)
        if not server.alive():
            errors.append("timoner server died during the run")
    finally:
        server.stop()
    server.check_stopped(errors, results)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-webhook"]:  # the webhook server's own process
        serve_webhook(int(argv[1]), argv[2], argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk phase (default 10)")
    p.add_argument("--crds", type=int, default=20, help="CRDs per round of phase 1 (two rounds; default 20)")
    p.add_argument("--storage", default="sqlite", help="timoner storage: sqlite (default) or memory")
    p.add_argument("--skip-webhook", action="store_true", help="do not measure the admission webhook")
    p.add_argument("--json", type=Path, help="write the JSON results here instead of stdout")
    args = p.parse_args(argv)

    results: dict = {"machine": machine(), "storage": args.storage, "duration_s": args.duration,
                     "load_avg_at_start": list(os.getloadavg())}
    errors: list[str] = []
    status = 0
    with tempfile.TemporaryDirectory(prefix="timoner-bench-ext-") as tmp:
        try:
            run(args, Path(tmp), results, errors)
        except (Broken, StartError, RuntimeError, OSError, HTTPError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            status = 1
        except KeyboardInterrupt:
            errors.append("interrupted")
            status = 130
    results["errors"] = errors
    results["goals"] = {k: {"goal": g[2], "met": _met(k, _lookup(results, k)) or None} for k, g in GOALS.items()}

    print()
    m = results["machine"]
    print(f"Timoner extensibility benchmark — {m['date']}, {m['nproc']} cores ({m['cpu']}), storage {args.storage}, "
          f"{args.duration:g}s per wrk phase, load average at start {results['load_avg_at_start'][0]:.2f}")
    rows = table(results)
    if rows:
        print_table(rows)
    if results.get("webhook", {}).get("webhook_server_cpu_s") is not None:
        print(f"webhook server CPU over its four wrk phases: {results['webhook']['webhook_server_cpu_s']} s")
    return finish(results, errors, args.json) or status


if __name__ == "__main__":
    sys.exit(main())
