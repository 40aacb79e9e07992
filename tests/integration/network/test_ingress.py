"""IngressController against a real API server, proxying to real HTTP servers on 127.0.0.2 and 127.0.0.3.

Services and EndpointSlices are written directly with the client (no
controller runs here). Each test's controller serves its own IngressClass
(`class_name`), so the Ingresses other tests leave in the module's API
server never reach it.

The API server refuses loopback endpoint addresses (as upstream), so the
EndpointSlices name the documentation addresses 192.0.2.N and the
controller is given a dialer that connects to 127.0.0.N instead; all else
(routing, endpoint choice, retries, the sockets) is the real thing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import ssl
import uuid

import h11
import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ingress_backends import Backend

from timoner.client import resource_for
from timoner.network.ingress import CONTROLLER, IngressController

SERVICES = resource_for("v1", "Service")
SLICES = resource_for("discovery.k8s.io/v1", "EndpointSlice")
INGRESSES = resource_for("networking.k8s.io/v1", "Ingress")
INGRESS_CLASSES = resource_for("networking.k8s.io/v1", "IngressClass")
SECRETS = resource_for("v1", "Secret")
EVENTS = resource_for("v1", "Event")
DEFAULT_CLASS = "ingressclass.kubernetes.io/is-default-class"
FAKE_CN = "Timoner Ingress Controller Fake Certificate"


@pytest.fixture
def server(module_server):
    """The module's one API server: each test's controller serves a class of its own (see above)."""
    return module_server


@pytest.fixture
async def backends():
    """Two HTTP servers: `a` on 127.0.0.2, `b` on 127.0.0.3 (stopped in reverse order: uvicorn's signal handlers)."""
    async with Backend("a", "127.0.0.2") as a, Backend("b", "127.0.0.3") as b:
        yield a, b


def cluster_address(backend: Backend) -> tuple[str, int]:
    """The address an EndpointSlice gives for a backend on 127.0.0.N: 192.0.2.N."""
    return backend.host.replace("127.0.0.", "192.0.2.", 1), backend.port


async def to_loopback(host: str, port: int):
    """The test dialer: 192.0.2.N is reached at 127.0.0.N (see the module docstring)."""
    if host.startswith("192.0.2."):
        host = host.replace("192.0.2.", "127.0.0.", 1)
    return await asyncio.open_connection(host, port)


@pytest.fixture
async def start_ingress(client):
    """Start an IngressController (127.0.0.1, any ports, a class of its own unless given) and wait until ready."""
    started: list[asyncio.Task] = []

    async def start(**options) -> IngressController:
        options.setdefault("class_name", f"test-{uuid.uuid4().hex[:8]}")
        controller = IngressController(client, host="127.0.0.1", http_port=0, https_port=0, dial=to_loopback,
                                       **options)
        task = asyncio.create_task(controller.run())
        started.append(task)
        ready = asyncio.create_task(controller.ready.wait())
        await asyncio.wait({ready, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert controller.ready.is_set(), "the ingress controller did not get ready"
        assert controller.http_port and controller.https_port
        return controller

    yield start
    for task in started:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


# -- builders ----------------------------------------------------------------------------------


async def service(client, namespace: str, name: str, *, port: int = 80, port_name: str = "http",
                  target_port: int | str = 8080) -> dict:
    return await client.create(SERVICES, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"ports": [{"name": port_name, "port": port, "targetPort": target_port, "protocol": "TCP"}]},
    }, namespace=namespace)


async def endpoints(client, namespace: str, service_name: str, *addresses: tuple[str, int],
                    ready: bool = True, port_name: str = "http") -> dict:
    """One EndpointSlice for the Service; all `addresses` must share one port (slices have one port list)."""
    ports = {port for _, port in addresses} or {1}
    assert len(ports) == 1
    return await client.create(SLICES, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service_name}-{uuid.uuid4().hex[:5]}",
                     "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, _ in addresses],
        "ports": [{"name": port_name, "port": ports.pop(), "protocol": "TCP"}],
    }, namespace=namespace)


async def service_on(client, namespace: str, name: str, target: Backend, *, port: int = 80,
                     port_name: str = "http") -> None:
    """A Service whose one EndpointSlice names the `target` backend (at its 192.0.2.N address)."""
    await service(client, namespace, name, port=port, port_name=port_name)
    await endpoints(client, namespace, name, cluster_address(target), port_name=port_name)


def backend(service_name: str, port: int | str = 80) -> dict:
    return {"service": {"name": service_name,
                        "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def rule(host: str | None, *paths: tuple[str, str, dict]) -> dict:
    out: dict = {"http": {"paths": [{"path": p, "pathType": t, "backend": b} for p, t, b in paths]}}
    if host:
        out["host"] = host
    return out


async def ingress(client, namespace: str, name: str, *, class_name: str | None, rules=(), default=None,
                  tls=None, annotations=None) -> dict:
    spec: dict = {"rules": list(rules)}
    if class_name:
        spec["ingressClassName"] = class_name
    if default is not None:
        spec["defaultBackend"] = default
    if tls is not None:
        spec["tls"] = tls
    return await client.create(INGRESSES, {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec,
    }, namespace=namespace)


async def get(http: httpx.AsyncClient, controller: IngressController, host: str, path: str, **kw) -> httpx.Response:
    return await http.get(f"http://127.0.0.1:{controller.http_port}{path}", headers={"Host": host, **kw})


def which(response: httpx.Response) -> str:
    """The backend that answered (`a`/`b`), or the status code for any other answer."""
    return response.headers.get("x-backend") or str(response.status_code)


async def served(http, controller, host: str, path: str, want: str, eventually) -> httpx.Response:
    """Wait until a request for host+path is answered by `want` (a backend name or a status code)."""
    last: list[httpx.Response] = []

    async def check():
        response = await get(http, controller, host, path)
        last[:] = [response]
        return response if which(response) == want else None

    try:
        return await eventually(check, timeout=5, what=f"{host}{path} answered by {want}")
    except AssertionError:
        raise AssertionError(f"{host}{path}: wanted {want}, last answer {which(last[0]) if last else None}") from None


# -- tests -------------------------------------------------------------------------------------


async def test_creates_its_ingress_class_and_leaves_an_existing_one_alone(client, start_ingress):
    with contextlib.suppress(Exception):
        await client.delete(INGRESS_CLASSES, "timoner")
    await start_ingress(class_name="timoner")
    made = await client.get(INGRESS_CLASSES, "timoner")
    assert made["spec"]["controller"] == CONTROLLER == "timoner.dev/ingress-controller"
    assert made["metadata"]["annotations"][DEFAULT_CLASS] == "true"

    mine = f"own-{uuid.uuid4().hex[:6]}"
    before = await client.create(INGRESS_CLASSES, {
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": mine, "annotations": {DEFAULT_CLASS: "false"}, "labels": {"keep": "me"}},
        "spec": {"controller": CONTROLLER}})
    await start_ingress(class_name=mine)
    after = await client.get(INGRESS_CLASSES, mine)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["metadata"]["annotations"][DEFAULT_CLASS] == "false"


async def test_routes_two_hosts_to_two_services_with_forwarded_headers_and_status(
        client, namespace, backends, start_ingress, http, eventually):
    a, b = backends
    controller = await start_ingress(node_ips=("127.0.0.1",))
    await service_on(client, namespace, "svc-a", a)
    await service_on(client, namespace, "svc-b", b, port=8000, port_name="web")
    host_a, host_b = f"a.{namespace}.example.test", f"b.{namespace}.example.test"
    ing = await ingress(client, namespace, "two-hosts", class_name=controller.class_name, rules=[
        rule(host_a, ("/", "Prefix", backend("svc-a"))),
        rule(host_b, ("/", "Prefix", backend("svc-b", "web"))),  # by port name
    ])

    response = await served(http, controller, host_a, "/hello/there?x=1", "a", eventually)
    seen = response.json()
    assert (seen["path"], seen["query"]) == ("/hello/there", "x=1")
    assert seen["headers"]["host"] == host_a
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1" == seen["headers"]["x-real-ip"]
    assert seen["headers"]["x-forwarded-host"] == host_a
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-port"] == str(controller.http_port)
    assert len(seen["headers"]["x-request-id"]) == 32

    # The client's X-Forwarded-For is replaced (ingress-nginx's default) and kept aside.
    spoofed = (await get(http, controller, host_b, "/", **{"X-Forwarded-For": "203.0.113.9"})).json()
    assert seen and spoofed["backend"] == "b"
    assert spoofed["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert spoofed["headers"]["x-original-forwarded-for"] == "203.0.113.9"

    assert which(await get(http, controller, f"c.{namespace}.example.test", "/")) == "404"

    async def status_written():
        current = await client.get(INGRESSES, ing["metadata"]["name"], namespace=namespace)
        return current.get("status", {}).get("loadBalancer", {}).get("ingress")

    assert await eventually(status_written, timeout=5, what="status.loadBalancer") == [{"ip": "127.0.0.1"}]
    # Another node's address is kept, ours added back (several controllers share the list).
    await client.patch(INGRESSES, "two-hosts", {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.9"}]}}},
                       namespace=namespace, subresource="status")

    async def both():
        value = await status_written()
        return value if value and len(value) == 2 else None

    assert await eventually(both, timeout=5, what="our IP added again") == [{"ip": "127.0.0.9"}, {"ip": "127.0.0.1"}]

    async def sync_event():
        events = await client.list(EVENTS, namespace=namespace)
        return [e for e in events["items"] if e["involvedObject"]["name"] == "two-hosts" and e["reason"] == "Sync"]

    event = (await eventually(sync_event, timeout=5, what="a Sync event"))[0]
    assert (event["type"], event["message"]) == ("Normal", "Scheduled for sync")


async def test_exact_prefix_and_longest_match(client, namespace, backends, start_ingress, http, eventually):
    a, b = backends
    controller = await start_ingress()
    await service_on(client, namespace, "svc-a", a)
    await service_on(client, namespace, "svc-b", b)
    host = f"paths.{namespace}.example.test"
    await ingress(client, namespace, "paths", class_name=controller.class_name, rules=[rule(
        host,
        ("/foo", "Exact", backend("svc-a")),
        ("/foo", "Prefix", backend("svc-b")),
        ("/foo/bar/", "Prefix", backend("svc-a")),
    )])
    await served(http, controller, host, "/foo", "a", eventually)  # Exact beats Prefix of equal length
    expected = {"/foo/": "b", "/foo/x": "b", "/foo/bar": "a", "/foo/bar/baz": "a", "/foo/barbaz": "b",
                "/foobar": "404", "/": "404", "/foo/./bar": "a", "/x/../foo/bar": "a"}
    answers = {path: which(await get(http, controller, host, path)) for path in expected}
    assert answers == expected


async def test_default_backend_404_and_503(client, namespace, backends, start_ingress, http, eventually):
    a, _ = backends
    controller = await start_ingress()
    await service_on(client, namespace, "svc-a", a)
    await service(client, namespace, "svc-empty")
    await service(client, namespace, "svc-unready")
    await endpoints(client, namespace, "svc-unready", ("192.0.2.3", 9), ready=False)
    host = f"errors.{namespace}.example.test"
    await ingress(client, namespace, "catch-all", class_name=controller.class_name, default=backend("svc-a"))
    await ingress(client, namespace, "errors", class_name=controller.class_name, rules=[rule(
        host,
        ("/empty", "Prefix", backend("svc-empty")),
        ("/unready", "Prefix", backend("svc-unready")),
        ("/missing", "Prefix", backend("svc-missing")),
        ("/badport", "Prefix", backend("svc-a", 81)),
    )])
    # Any host no rule names goes to the default backend.
    await served(http, controller, f"unknown.{namespace}.example.test", "/anything", "a", eventually)
    await served(http, controller, host, "/empty", "503", eventually)
    response = await get(http, controller, host, "/unready")
    assert response.status_code == 503 and b"503 Service Temporarily Unavailable" in response.content
    assert which(await get(http, controller, host, "/missing")) == "503"
    assert which(await get(http, controller, host, "/badport")) == "503"
    # A host with rules answers 404 for paths none of them claims (as ingress-nginx: the default
    # backend of that Ingress, here none), not the catch-all's backend.
    response = await get(http, controller, host, "/elsewhere")
    assert response.status_code == 404 and b"404 Not Found" in response.content


async def test_an_update_of_the_ingress_takes_effect_quickly(client, namespace, backends, start_ingress, http,
                                                             eventually):
    a, b = backends
    controller = await start_ingress()
    await service_on(client, namespace, "svc-a", a)
    await service_on(client, namespace, "svc-b", b)
    host = f"moving.{namespace}.example.test"
    await ingress(client, namespace, "moving", class_name=controller.class_name,
                  rules=[rule(host, ("/", "Prefix", backend("svc-a")))])
    await served(http, controller, host, "/", "a", eventually)
    await client.patch(INGRESSES, "moving", {"spec": {"rules": [rule(host, ("/", "Prefix", backend("svc-b")))]}},
                       namespace=namespace)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await served(http, controller, host, "/", "b", eventually)
    assert loop.time() - started < 2
    # New endpoints are used as soon as they are seen, without an Ingress change.
    await service(client, namespace, "svc-late")
    await client.patch(INGRESSES, "moving", {"spec": {"rules": [rule(host, ("/", "Prefix", backend("svc-late")))]}},
                       namespace=namespace)
    await served(http, controller, host, "/", "503", eventually)
    await endpoints(client, namespace, "svc-late", cluster_address(a))
    await served(http, controller, host, "/", "a", eventually)


async def test_class_selection(client, namespace, backends, start_ingress, http, eventually):
    a, _ = backends
    await service_on(client, namespace, "svc-a", a)
    not_default = f"plain-{uuid.uuid4().hex[:6]}"
    await client.create(INGRESS_CLASSES, {
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": not_default, "annotations": {DEFAULT_CLASS: "false"}},
        "spec": {"controller": CONTROLLER}})
    plain = await start_ingress(class_name=not_default)
    default = await start_ingress()  # its own class, made default

    def route(name: str) -> dict:
        return rule(f"{name}.{namespace}.example.test", ("/", "Prefix", backend("svc-a")))

    await ingress(client, namespace, "named", class_name=not_default, rules=[route("named")])
    await ingress(client, namespace, "legacy", class_name=None, rules=[route("legacy")],
                  annotations={"kubernetes.io/ingress.class": not_default})
    await ingress(client, namespace, "classless", class_name=None, rules=[route("classless")])
    await ingress(client, namespace, "other", class_name="someone-else", rules=[route("other")])

    await served(http, plain, f"named.{namespace}.example.test", "/", "a", eventually)
    await served(http, plain, f"legacy.{namespace}.example.test", "/", "a", eventually)
    await served(http, default, f"classless.{namespace}.example.test", "/", "a", eventually)
    assert which(await get(http, plain, f"classless.{namespace}.example.test", "/")) == "404"
    assert which(await get(http, plain, f"other.{namespace}.example.test", "/")) == "404"
    assert which(await get(http, default, f"named.{namespace}.example.test", "/")) == "404"
    assert which(await get(http, default, f"legacy.{namespace}.example.test", "/")) == "404"
    assert which(await get(http, default, f"other.{namespace}.example.test", "/")) == "404"


def make_certificate(host: str) -> tuple[bytes, bytes, bytes]:
    """(CA PEM, leaf PEM, leaf key PEM): a leaf for `host` signed by a fresh CA."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ingress test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), leaf.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


async def served_certificate(port: int, server_name: str | None) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_name)
    try:
        return x509.load_der_x509_certificate(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
    finally:
        writer.close()


def names(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        san = []
    return str(cn), list(san)


async def test_tls_by_sni_fake_certificate_and_https_redirect(client, namespace, backends, start_ingress, http,
                                                             eventually):
    a, _ = backends
    controller = await start_ingress()
    await service_on(client, namespace, "svc-a", a)
    secure, other = f"secure.{namespace}.example.test", f"other.{namespace}.example.test"
    ca, cert, key = make_certificate(secure)
    await client.create(SECRETS, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secure-tls"}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
    }, namespace=namespace)
    await ingress(client, namespace, "secure", class_name=controller.class_name,
                  tls=[{"hosts": [secure], "secretName": "secure-tls"}],
                  rules=[rule(secure, ("/", "Prefix", backend("svc-a")))])
    await ingress(client, namespace, "plain", class_name=controller.class_name,
                  rules=[rule(other, ("/", "Prefix", backend("svc-a")))])

    async def secure_certificate():
        cn, _ = names(await served_certificate(controller.https_port, secure))
        return cn == secure

    await eventually(secure_certificate, timeout=5, what="the Secret's certificate served for its host")
    assert names(await served_certificate(controller.https_port, secure)) == (secure, [secure])
    for server_name in (other, None, "nowhere.example.test"):
        cn, san = names(await served_certificate(controller.https_port, server_name))
        assert (cn, san) == (FAKE_CN, ["ingress.local"]), server_name

    # Plain HTTP to the TLS host: 308 to https, same path and query; the other host is served.
    redirect = await get(http, controller, secure, "/some/path?q=1")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == f"https://{secure}:{controller.https_port}/some/path?q=1"
    assert which(await get(http, controller, other, "/")) == "a"

    # HTTPS with SNI, verified against the test's CA: the backend sees https.
    verify = ssl.create_default_context(cadata=ca.decode())
    async with httpx.AsyncClient(verify=verify, timeout=10) as https:
        response = await https.get(f"https://127.0.0.1:{controller.https_port}/x", headers={"Host": secure},
                                   extensions={"sni_hostname": secure})
    assert response.status_code == 200 and response.json()["backend"] == "a"
    assert response.json()["headers"]["x-forwarded-proto"] == "https"
    assert response.json()["headers"]["x-forwarded-port"] == "443"
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


async def test_streams_bodies_both_ways_and_keeps_connections(client, namespace, backends, start_ingress, http,
                                                              eventually):
    a, _ = backends
    controller = await start_ingress()
    await service_on(client, namespace, "svc-a", a)
    host = f"stream.{namespace}.example.test"
    await ingress(client, namespace, "stream", class_name=controller.class_name,
                  rules=[rule(host, ("/", "Prefix", backend("svc-a")))])
    await served(http, controller, host, "/", "a", eventually)
    url = f"http://127.0.0.1:{controller.http_port}"

    # A large body, by Content-Length and chunked, arrives whole.
    body = bytes(range(256)) * 20000  # 5 MB
    seen = (await http.post(f"{url}/upload", content=body, headers={"Host": host})).json()
    assert seen["body_length"] == len(body) and seen["headers"]["content-length"] == str(len(body))

    async def pieces():
        for i in range(0, len(body), 300_000):
            yield body[i:i + 300_000]

    seen = (await http.post(f"{url}/upload", content=pieces(), headers={"Host": host})).json()
    assert seen["body_length"] == len(body) and seen["headers"]["transfer-encoding"] == "chunked"
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()

    # The response comes as the backend sends it: the first chunk before the backend sends the second.
    async with http.stream("GET", f"{url}/stream", headers={"Host": host}) as response:
        chunks = response.aiter_raw()
        first = await asyncio.wait_for(anext(chunks), 5)
        assert first == b"first;" and not a.release.is_set()
        a.release.set()
        assert b"".join([c async for c in chunks]) == b"second"

    # Full duplex: the echo of the first request chunk arrives before the second chunk is sent;
    # then a second, pipelined request on the same connection.
    reader, writer = await asyncio.open_connection("127.0.0.1", controller.http_port)
    conn = h11.Connection(h11.CLIENT)

    async def receive_event():
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await asyncio.wait_for(reader.read(65536), 5))

    writer.write(conn.send(h11.Request(method="POST", target="/echo",
                                       headers=[("Host", host), ("Transfer-Encoding", "chunked")])))
    writer.write(conn.send(h11.Data(data=b"ping-1;")))
    response = await receive_event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    echoed = b""
    while echoed != b"ping-1;":
        event = await receive_event()
        assert isinstance(event, h11.Data)
        echoed += event.data
    writer.write(conn.send(h11.Data(data=b"ping-2")) + conn.send(h11.EndOfMessage()))
    rest = b""
    while not isinstance(event := await receive_event(), h11.EndOfMessage):
        rest += event.data
    assert rest == b"ping-2"
    conn.start_next_cycle()
    writer.write(conn.send(h11.Request(method="GET", target="/again", headers=[("Host", host)]))
                 + conn.send(h11.EndOfMessage()))
    response = await receive_event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    payload = b""
    while not isinstance(event := await receive_event(), h11.EndOfMessage):
        payload += event.data
    assert json.loads(payload)["path"] == "/again"
    writer.close()

    # Connections to the endpoint are reused: two requests in a row come from one proxy socket.
    first = (await get(http, controller, host, "/one")).json()["client"]
    second = (await get(http, controller, host, "/two")).json()["client"]
    assert first == second


async def test_websocket_upgrade_is_passed_through(client, namespace, backends, start_ingress, eventually, http):
    _, b = backends
    controller = await start_ingress()
    await service_on(client, namespace, "svc-b", b)
    await ingress(client, namespace, "ws", class_name=controller.class_name,
                  rules=[rule(None, ("/ws", "Prefix", backend("svc-b")))])  # no host: the catch-all server
    await served(http, controller, "127.0.0.1", "/ws/check", "b", eventually)
    async with websockets.connect(f"ws://127.0.0.1:{controller.http_port}/ws") as ws:
        for text in ("hello", "x" * 100_000):
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 5) == f"b:{text}"


async def test_connect_failure_tries_other_endpoints(client, namespace, backends, start_ingress, http, eventually):
    a, _ = backends
    controller = await start_ingress()
    await service(client, namespace, "svc-a")
    # Two endpoints on backend a's port: a, and 127.0.0.4, where nothing listens (refused at once).
    await client.create(SLICES, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "svc-a-mixed", "labels": {"kubernetes.io/service-name": "svc-a"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.2"], "conditions": {"ready": True}},
                      {"addresses": ["192.0.2.4"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": a.port, "protocol": "TCP"}],
    }, namespace=namespace)
    host = f"retry.{namespace}.example.test"
    await ingress(client, namespace, "retry", class_name=controller.class_name,
                  rules=[rule(host, ("/", "Prefix", backend("svc-a")))])
    await served(http, controller, host, "/", "a", eventually)
    answers = {which(await get(http, controller, host, f"/{i}")) for i in range(20)}
    assert answers == {"a"}


async def raw_backend(host: str):
    """A hand-written HTTP endpoint for framings uvicorn does not produce; answers by path, then closes."""
    answers = {
        "/close": b"HTTP/1.0 200 OK\r\nX-Backend: raw\r\n\r\nclose-delimited body",
        "/nocontent": b"HTTP/1.1 204 No Content\r\nX-Backend: raw\r\n\r\n",
        "/head": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Backend: raw\r\n\r\n",
        "/interim": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: raw\r\n\r\nok",
    }

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            writer.write(answers.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, 0)


async def test_framing_edge_cases_and_bad_requests(client, namespace, start_ingress, http, eventually):
    raw = await raw_backend("127.0.0.3")
    try:
        port = raw.sockets[0].getsockname()[1]
        controller = await start_ingress()
        await service(client, namespace, "svc-raw")
        await endpoints(client, namespace, "svc-raw", ("192.0.2.3", port))
        host = f"raw.{namespace}.example.test"
        await ingress(client, namespace, "raw", class_name=controller.class_name,
                      rules=[rule(host, ("/", "Prefix", backend("svc-raw")))])
        url = f"http://127.0.0.1:{controller.http_port}"
        await served(http, controller, host, "/close", "raw", eventually)

        response = await http.get(f"{url}/close", headers={"Host": host})
        # A close-delimited body reaches an HTTP/1.1 client chunked, whole.
        assert response.content == b"close-delimited body" and response.headers["transfer-encoding"] == "chunked"
        response = await http.get(f"{url}/nocontent", headers={"Host": host})
        assert response.status_code == 204 and response.content == b""
        response = await http.head(f"{url}/head", headers={"Host": host})  # must not wait for 1000 bytes
        assert response.status_code == 200 and response.headers["content-length"] == "1000"
        response = await http.get(f"{url}/interim", headers={"Host": host})
        assert (response.status_code, response.content) == (200, b"ok")

        for request, status in [(b"NOT HTTP AT ALL\r\n\r\n", b"400"),
                                (b"GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", b"400"),
                                (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 70000 + b"\r\n\r\n", b"431")]:
            reader, writer = await asyncio.open_connection("127.0.0.1", controller.http_port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 5)  # the proxy closes after answering
            writer.close()
            assert answer.split(b" ", 2)[1] == status, answer[:60]
    finally:
        raw.close()
