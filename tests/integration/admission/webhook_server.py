"""A real HTTPS admission webhook server for tests: its own CA, a serving certificate, scripted answers.

`WebhookServer` serves AdmissionReview v1 on a thread (`http.server` + `ssl`). Each path gets a
handler `review -> response` (the `uid` is filled in); every request is recorded with its path,
query, Host header and review. The serving certificate is issued by the server's own CA for
127.0.0.1 and the DNS names given, so `ca_bundle` (base64 PEM) is what a webhook configuration's
`clientConfig.caBundle` carries. Also used by `tests/e2e/test_up_webhooks.py`.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Handler = Callable[[dict], dict]


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certs(dns_names: tuple[str, ...], ip: str) -> tuple[bytes, bytes, bytes]:
    """(CA cert PEM, serving cert PEM, serving key PEM) for `dns_names` and `ip`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = _key()
    sans = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(ip))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0] if dns_names else ip)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (ca.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.PEM),
            _pem_key(key))


def allow(review: dict) -> dict:
    return {"allowed": True}


def deny(message: str = "", *, code: int | None = None, reason: str | None = None) -> Handler:
    def handler(review: dict) -> dict:
        status: dict = {}
        if message:
            status["message"] = message
        if code is not None:
            status["code"] = code
        if reason is not None:
            status["reason"] = reason
        return {"allowed": False, "status": status}
    return handler


def json_patch(ops: list[dict], *, warnings: tuple[str, ...] = ()) -> Handler:
    def handler(review: dict) -> dict:
        out = {"allowed": True, "patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}
        if warnings:
            out["warnings"] = list(warnings)
        return out
    return handler


def add_label(key: str, value: str) -> Handler:
    """A JSONPatch adding a label (creating `metadata.labels` when the object has none)."""
    escaped = key.replace("~", "~0").replace("/", "~1")

    def handler(review: dict) -> dict:
        labels = ((review["request"].get("object") or {}).get("metadata") or {}).get("labels")
        ops = [{"op": "add", "path": f"/metadata/labels/{escaped}", "value": value}] if labels is not None else \
            [{"op": "add", "path": "/metadata/labels", "value": {key: value}}]
        return json_patch(ops)(review)
    return handler


def slow(seconds: float) -> Handler:
    def handler(review: dict) -> dict:
        time.sleep(seconds)
        return {"allowed": True}
    return handler


class WebhookServer:
    """An HTTPS AdmissionReview server on a background thread; see the module docstring."""

    def __init__(self, *, dns_names: tuple[str, ...] = ("localhost",), host: str = "127.0.0.1") -> None:
        self.host = host
        ca, cert, key = make_certs(dns_names, host)
        self.ca_pem = ca
        self.ca_bundle = base64.b64encode(ca).decode()
        self.handlers: dict[str, Handler] = {}
        self.requests: list[dict] = []  # {"path", "query", "host", "review"}
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory()
        Path(self._dir.name, "tls.crt").write_bytes(cert)
        Path(self._dir.name, "tls.key").write_bytes(key)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"https://{self.host}:{self.port}{path}"

    def received(self, path: str, name: str | None = None) -> list[dict]:
        """The reviews received on `path`, oldest first; with `name`, only those about that object.

        `name` is compared with the request's name and the object's name or generateName (other
        objects may match a test's webhooks too, such as the `kube-root-ca.crt` ConfigMap of a new
        namespace).
        """
        with self._lock:
            reviews = [r["review"] for r in self.requests if r["path"] == path]
        if name is None:
            return reviews

        def about(review: dict) -> set:
            request = review["request"]
            meta = (request.get("object") or request.get("oldObject") or {}).get("metadata") or {}
            return {request.get("name"), meta.get("name"), meta.get("generateName")}

        return [r for r in reviews if name in about(r)]

    def start(self) -> WebhookServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                review = json.loads(self.rfile.read(length))
                path, _, query = self.path.partition("?")
                with server._lock:
                    server.requests.append({"path": path, "query": query, "host": self.headers.get("host"),
                                            "review": review})
                handler = server.handlers.get(path)
                if handler is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                response = dict(handler(review))
                response["uid"] = review["request"]["uid"]
                body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "response": response}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(Path(self._dir.name, "tls.crt"), Path(self._dir.name, "tls.key"))
        httpd = ThreadingHTTPServer((self.host, 0), _Handler)
        httpd.daemon_threads = True
        # A client that gave up (the timeout test) leaves the handler writing to a closed socket: not news.
        httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="webhook-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self._dir.cleanup()

    def __enter__(self) -> WebhookServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def webhook(name: str, url: str, ca_bundle: str, *, ns: str | None = None, resources=("configmaps",),
            operations=("CREATE",), groups=("",), **extra) -> dict:
    """One webhook configuration entry; with `ns`, only requests in that namespace match (namespaceSelector)."""
    hook = {
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "rules": [{"operations": list(operations), "apiGroups": list(groups), "apiVersions": ["v1"],
                   "resources": list(resources)}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    if ns is not None:
        hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    hook.update(extra)
    return hook
