"""The ingress controller's fake certificate: `python -m timoner.network._ingress_fakecert` prints it.

A child process on purpose (see `_ingress_tls.fake_certificate`): it
imports `cryptography`, which the node agent must not. Output on stdout:
the certificate PEM, then the PKCS#8 private key PEM. The certificate is
ingress-nginx's fake one in Timoner's words: self-signed, EC P-256, CN
"Timoner Ingress Controller Fake Certificate", SAN `ingress.local`, a year.
"""

from __future__ import annotations

import datetime as dt
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

COMMON_NAME = "Timoner Ingress Controller Fake Certificate"


def fake_certificate_pem() -> bytes:
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Timoner"),
                      x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=365))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]), critical=False)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .sign(private, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM)
            + private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))


if __name__ == "__main__":
    sys.stdout.buffer.write(fake_certificate_pem())
