"""Kubeconfig loading: contexts, inline and file credentials, tokens, and a working TLS context."""

from __future__ import annotations

import base64

import pytest
import yaml

from timoner.api.errors import Unauthorized
from timoner.client import Client, KubeconfigError, Resource, load_kubeconfig

NAMESPACES = Resource("", "v1", "namespaces", False)


def _write(path, doc):
    path.write_text(yaml.safe_dump(doc))
    return path


def _multi(api, tmp_path):
    """A kubeconfig with three contexts: inline certs, CA file + token file, and no credentials."""
    pki = api.server.pki
    (tmp_path / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    (tmp_path / "tok").write_text(pki.token() + "\n")
    ca = base64.b64encode(pki.ca_cert.read_bytes()).decode()
    return _write(tmp_path / "config", {
        "apiVersion": "v1", "kind": "Config", "current-context": "certs",
        "clusters": [
            {"name": "inline", "cluster": {"server": api.url + "/", "certificate-authority-data": ca}},
            {"name": "files", "cluster": {"server": api.url, "certificate-authority": "ca.crt"}},
        ],
        "users": [
            {"name": "admin", "user": {"client-certificate": str(pki.admin_cert),
                                       "client-key": str(pki.admin_key)}},
            {"name": "bearer", "user": {"tokenFile": "tok"}},
        ],
        "contexts": [
            {"name": "certs", "context": {"cluster": "inline", "user": "admin", "namespace": "team-a"}},
            {"name": "token", "context": {"cluster": "files", "user": "bearer"}},
            {"name": "anonymous", "context": {"cluster": "files"}},
        ],
    })


def test_server_written_kubeconfig(api):
    config = load_kubeconfig(api.kubeconfig)
    assert config.server == api.url
    assert config.ca_data is not None and config.ca_data.startswith(b"-----BEGIN CERTIFICATE")
    assert config.client_cert_data and config.client_key_data
    assert config.namespace == "default"
    assert "PRIVATE" not in repr(config) and "BEGIN" not in repr(config)


def test_contexts_resolve_files_relative_to_the_kubeconfig(api, tmp_path):
    path = _multi(api, tmp_path)
    certs = load_kubeconfig(path)
    assert certs.server == api.url and certs.namespace == "team-a"
    assert certs.client_cert_file == str(api.server.pki.admin_cert)
    token = load_kubeconfig(str(path), context="token")
    assert token.ca_file == str(tmp_path / "ca.crt")
    assert token.token == api.server.pki.token()
    assert token.namespace == "default"
    with pytest.raises(KubeconfigError, match="nope"):
        load_kubeconfig(path, context="nope")


def test_kubeconfig_errors(tmp_path):
    with pytest.raises(KubeconfigError):
        load_kubeconfig(tmp_path / "missing")
    bad = _write(tmp_path / "bad", {"clusters": [], "contexts": [{"name": "a", "context": {"cluster": "x"}},
                                                                 {"name": "b", "context": {"cluster": "x"}}]})
    with pytest.raises(KubeconfigError, match="current-context"):
        load_kubeconfig(bad)
    with pytest.raises(KubeconfigError, match="cluster 'x' not found"):
        load_kubeconfig(bad, context="a")


@pytest.mark.parametrize("context", ["certs", "token"])
async def test_each_credential_kind_authenticates(api, tmp_path, context):
    config = load_kubeconfig(_multi(api, tmp_path), context=context)
    async with Client(config) as c:
        listed = await c.list(NAMESPACES)
    assert "default" in [n["metadata"]["name"] for n in listed["items"]]


async def test_no_credentials_is_unauthorized(api, tmp_path):
    config = load_kubeconfig(_multi(api, tmp_path), context="anonymous")
    async with Client(config) as c:
        with pytest.raises(Unauthorized):
            await c.list(NAMESPACES)


def test_insecure_skip_verify_and_plain_http(api, tmp_path):
    import ssl

    insecure = _write(tmp_path / "insecure", {
        "current-context": "x", "clusters": [{"name": "c", "cluster": {"server": api.url,
                                                                         "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "x", "context": {"cluster": "c"}}]})
    context = load_kubeconfig(insecure).ssl_context()
    assert context is not None and context.verify_mode == ssl.CERT_NONE
    plain = _write(tmp_path / "plain", {
        "current-context": "x", "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c"}}]})
    assert load_kubeconfig(plain).ssl_context() is None
