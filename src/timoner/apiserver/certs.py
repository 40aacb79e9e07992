"""The cluster's PKI and the admin kubeconfig, generated into the data dir on first start.

Like kubeadm, Timoner makes a cluster CA, a serving certificate for the API
server (valid for loopback, the host name and the `kubernetes` Service IP)
an admin client certificate (CN `admin`, O `system:masters`) and the
certificate the API server presents to node agents (kubeadm's
`apiserver-kubelet-client`: CN `kube-apiserver-kubelet-client`, O
`system:masters`), which they verify against the same CA. It also
makes an admin bearer token, for clients that cannot present certificates
(load generators such as wrk), and kubeadm's service-account signing key
pair (`sa.key`, `sa.pub`) that signs the tokens of the TokenRequest API.
Existing files are reused, so a restarted server keeps its identity, old
kubeconfigs keep working and issued service-account tokens stay valid.

EC P-256 keys: cheap handshakes, and every client we target accepts them.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ClusterPKI", "ensure_pki", "write_kubeconfig"]

_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class ClusterPKI:
    """Paths of the generated files."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    admin_token: Path
    kubelet_client_cert: Path
    kubelet_client_key: Path
    sa_key: Path
    sa_pub: Path

    def token(self) -> str:
        return self.admin_token.read_text().strip()


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def ensure_pki(data_dir: Path, *, extra_sans: tuple[str, ...] = ()) -> ClusterPKI:
    """Create the CA, serving and admin credentials under `data_dir/pki` unless they exist."""
    pki_dir = data_dir / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki = ClusterPKI(
        ca_cert=pki_dir / "ca.crt",
        ca_key=pki_dir / "ca.key",
        server_cert=pki_dir / "apiserver.crt",
        server_key=pki_dir / "apiserver.key",
        admin_cert=pki_dir / "admin.crt",
        admin_key=pki_dir / "admin.key",
        admin_token=pki_dir / "admin.token",
        kubelet_client_cert=pki_dir / "apiserver-kubelet-client.crt",
        kubelet_client_key=pki_dir / "apiserver-kubelet-client.key",
        sa_key=pki_dir / "sa.key",
        sa_pub=pki_dir / "sa.pub",
    )
    if not pki.ca_cert.exists() or not pki.ca_key.exists():
        ca_key = _key()
        ca_name = _name("timoner-ca")
        ca_cert = (
            _builder(ca_name, ca_name, ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(pki.ca_key, ca_key)
        pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        for stale in (pki.server_cert, pki.admin_cert, pki.kubelet_client_cert):
            stale.unlink(missing_ok=True)
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())

    if not pki.server_cert.exists():
        key = _key()
        dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local", socket.gethostname()]
        ips = ["127.0.0.1", "::1", "100.65.0.1"]
        for san in extra_sans:
            try:
                ipaddress.ip_address(san)
                ips.append(san)
            except ValueError:
                dns.append(san)
        alt = [x509.DNSName(d) for d in dict.fromkeys(dns)] + [
            x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)
        ]
        cert = (
            _builder(_name("kube-apiserver"), ca_cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(pki.server_key, key)
        pki.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    clients = ((pki.admin_cert, pki.admin_key, "admin"),
               (pki.kubelet_client_cert, pki.kubelet_client_key, "kube-apiserver-kubelet-client"))
    for cert_path, key_path, common_name in clients:
        if cert_path.exists():
            continue
        key = _key()
        cert = (
            _builder(_name(common_name, "system:masters"), ca_cert.subject, key.public_key())
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    if not pki.admin_token.exists():
        pki.admin_token.write_text(secrets.token_urlsafe(32) + "\n")
        os.chmod(pki.admin_token, 0o600)
    if not pki.sa_key.exists():
        sa_key = _key()
        _write_key(pki.sa_key, sa_key)
        pki.sa_pub.write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, pki: ClusterPKI, server_url: str, *, cluster: str = "timoner") -> None:
    """Write an admin kubeconfig for `server_url` that authenticates with the admin client certificate."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server_url, "certificate-authority-data": _b64(pki.ca_cert)}}],
        "users": [{"name": f"{cluster}-admin", "user": {
            "client-certificate-data": _b64(pki.admin_cert), "client-key-data": _b64(pki.admin_key)}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-admin",
                                                   "namespace": "default"}}],
        "current-context": cluster,
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
