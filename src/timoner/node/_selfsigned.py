"""The node server's self-signed certificate: `python -m timoner.node._selfsigned <dir> <host>`.

It runs in a child process on purpose. The `cryptography` package costs a
process ~10 MB of resident memory once imported, and a node agent needs it
once in its life (the certificate is kept in its root dir), so it is never
loaded into the agent itself; the child takes ~0.2 s, on the first start only.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["write_self_signed"]


def write_self_signed(directory: Path, host: str) -> None:
    """Write `node.key` (0600) and `node.crt` (EC P-256, ten years, CN `timoner-node@<host>`) into `directory`."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"timoner-node@{host}")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=3650))
                   .sign(private, hashes.SHA256()))
    key = directory / "node.key"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key.chmod(0o600)
    # The certificate last: the server takes both files as there once it exists.
    (directory / "node.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    write_self_signed(Path(sys.argv[1]), sys.argv[2])
