"""Where the API server is and how to talk to it: kubeconfig loading and the TLS context.

`load_kubeconfig` reads the same file kubectl uses and resolves one context
into a `ClientConfig`: the server URL, the CA to trust, client certificate
and key (inline `*-data` or file paths, relative paths taken from the
kubeconfig's directory as kubectl does), a bearer token (inline or
`tokenFile`), `insecure-skip-tls-verify` and the context's namespace.

`ClientConfig.ssl_context()` builds the `ssl.SSLContext` once per client.
Python's `ssl` only loads client certificates from files, so inline
certificate data goes through a private temporary directory that is removed
as soon as the context has read it.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ClientConfig", "KubeconfigError", "load_kubeconfig"]


class KubeconfigError(ValueError):
    """The kubeconfig is missing, malformed, or names a context, cluster or user it does not define."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How to reach one API server as one user; build it with `load_kubeconfig` or directly."""

    server: str
    ca_data: bytes | None = None
    ca_file: str | None = None
    client_cert_data: bytes | None = None
    client_cert_file: str | None = None
    client_key_data: bytes | None = None
    client_key_file: str | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    namespace: str = "default"

    def __repr__(self) -> str:
        # Keys and tokens must not end up in logs through an innocent repr().
        return f"ClientConfig(server={self.server!r}, namespace={self.namespace!r})"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for an `https://` server, or None for plain `http://`."""
        if not self.server.startswith("https://"):
            return None
        if self.insecure_skip_tls_verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_data is not None or self.ca_file is not None:
            context = ssl.create_default_context(
                cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data is not None else None
            )
        else:
            context = ssl.create_default_context()
        cert, key = self.client_cert_data, self.client_key_data
        if self.client_cert_file and cert is None:
            cert = Path(self.client_cert_file).read_bytes()
        if self.client_key_file and key is None:
            key = Path(self.client_key_file).read_bytes()
        if cert is not None:
            _load_cert_chain(context, cert, key)
        return context


def _load_cert_chain(context: ssl.SSLContext, cert: bytes, key: bytes | None) -> None:
    with tempfile.TemporaryDirectory(prefix="timoner-tls-") as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem") if key is not None else None
        _write_private(cert_path, cert)
        if key_path is not None and key is not None:
            _write_private(key_path, key)
        context.load_cert_chain(cert_path, key_path)


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _named(entries: Any, name: str, what: str) -> dict[str, Any]:
    for entry in entries or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(what)
            return body if isinstance(body, dict) else {}
    raise KubeconfigError(f"{what} {name!r} not found in kubeconfig")


def _data(section: dict[str, Any], key: str) -> bytes | None:
    value = section.get(f"{key}-data")
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise KubeconfigError(f"{key}-data is not valid base64") from exc


def _file(section: dict[str, Any], key: str, base: Path) -> str | None:
    value = section.get(key)
    if not value:
        return None
    path = Path(os.path.expanduser(str(value)))
    return str(path if path.is_absolute() else base / path)


def load_kubeconfig(path: str | Path, *, context: str | None = None) -> ClientConfig:
    """Resolve `context` (default: `current-context`) of the kubeconfig at `path`.

    With several contexts and no `current-context`, a single-context file is
    still usable; otherwise the context must be named.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a mapping")
    contexts = doc.get("contexts") or []
    name = context or doc.get("current-context")
    if not name:
        if len(contexts) != 1:
            raise KubeconfigError("kubeconfig has no current-context; name one")
        name = contexts[0].get("name")
    ctx = _named(contexts, name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} has no server")
    base = path.parent
    token = user.get("token")
    token_file = _file(user, "tokenFile", base)
    if not token and token_file:
        token = Path(token_file).read_text().strip()
    return ClientConfig(
        server=str(server).rstrip("/"),
        ca_data=_data(cluster, "certificate-authority"),
        ca_file=_file(cluster, "certificate-authority", base),
        client_cert_data=_data(user, "client-certificate"),
        client_cert_file=_file(user, "client-certificate", base),
        client_key_data=_data(user, "client-key"),
        client_key_file=_file(user, "client-key", base),
        token=token or None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"),
        namespace=ctx.get("namespace") or "default",
    )
