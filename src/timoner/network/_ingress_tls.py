"""Certificates for the ingress controller, without loading `cryptography` into the node agent.

- `parse_certificate`: the names a PEM certificate covers (subject CN, SAN
  DNS names and IP addresses), read with a small DER walker; enough for
  ingress-nginx's check that a Secret's certificate is valid for a host
  (`verify_hostname`: Go's `VerifyHostname`, then the CN as ingress-nginx
  falls back to).
- `server_context`: an `ssl.SSLContext` serving one certificate and key
  (TLS 1.2+, ALPN `http/1.1`); it also proves the key matches.
- `fake_certificate`: the controller's own self-signed certificate (what
  ingress-nginx calls its "Kubernetes Ingress Controller Fake Certificate"),
  made once per start by a child process (`_ingress_fakecert`) so the
  ~10 MB of `cryptography` never load into the agent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import re
import ssl
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificate", "fake_certificate", "parse_certificate", "server_context"]

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S)
_OID_COMMON_NAME = bytes([0x55, 0x04, 0x03])  # 2.5.4.3
_OID_SUBJECT_ALT_NAME = bytes([0x55, 0x1D, 0x11])  # 2.5.29.17


@dataclass(frozen=True, slots=True)
class Certificate:
    """What a certificate is valid for."""

    common_names: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def verify_hostname(self, host: str) -> bool:
        host = host.strip().lower().rstrip(".")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        if address is not None:
            return any(ipaddress.ip_address(ip) == address for ip in self.ip_addresses)
        return any(_match_hostname(pattern, host) for pattern in (*self.dns_names, *self.common_names))


def _match_hostname(pattern: str, host: str) -> bool:
    """Go's matchHostnames: a `*` may stand for exactly the first label (never for a wildcard host)."""
    pattern = pattern.lower().rstrip(".")
    if not pattern or not host:
        return False
    if host.startswith("*"):
        return pattern == host
    pattern_labels, host_labels = pattern.split("."), host.split(".")
    if len(pattern_labels) != len(host_labels):
        return False
    for i, (p, h) in enumerate(zip(pattern_labels, host_labels, strict=True)):
        if i == 0 and p == "*" and h:
            continue
        if p != h:
            return False
    return True


# -- DER -----------------------------------------------------------------------------------


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """One TLV at `pos`: (tag, start of contents, end of contents)."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _items(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, s, e = _read(data, pos)
        yield tag, s, e
        pos = e


def _string(tag: int, value: bytes) -> str:
    if tag == 0x1E:  # BMPString
        return value.decode("utf-16-be", "replace")
    if tag == 0x1C:  # UniversalString
        return value.decode("utf-32-be", "replace")
    return value.decode("utf-8" if tag == 0x0C else "latin-1", "replace")


def parse_certificate(pem: bytes) -> Certificate:
    """The names of the first certificate in `pem`; ValueError when there is none or it cannot be read."""
    match = _PEM.search(pem)
    if match is None:
        raise ValueError("no PEM certificate")
    try:
        der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
        return _parse_der(der)
    except (IndexError, ValueError) as exc:
        raise ValueError(f"unreadable certificate: {exc}") from None


def _parse_der(der: bytes) -> Certificate:
    tag, start, end = _read(der, 0)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, start, end = _read(der, start)  # tbsCertificate
    fields = list(_items(der, start, end))
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, then optional [1] [2] [3]
    if len(fields) < 6:
        raise ValueError("short tbsCertificate")
    _, subject_start, subject_end = fields[4]
    common_names = []
    for _, rdn_start, rdn_end in _items(der, subject_start, subject_end):  # SET
        for _, atv_start, atv_end in _items(der, rdn_start, rdn_end):  # SEQUENCE {oid, value}
            parts = list(_items(der, atv_start, atv_end))
            if len(parts) == 2 and der[parts[0][1]:parts[0][2]] == _OID_COMMON_NAME:
                common_names.append(_string(parts[1][0], der[parts[1][1]:parts[1][2]]))
    dns_names: list[str] = []
    ips: list[str] = []
    for tag, s, _end in fields[6:]:
        if tag != 0xA3:
            continue
        _, seq_start, seq_end = _read(der, s)
        for _, ext_start, ext_end in _items(der, seq_start, seq_end):
            parts = list(_items(der, ext_start, ext_end))
            if not parts or der[parts[0][1]:parts[0][2]] != _OID_SUBJECT_ALT_NAME:
                continue
            _, value_start, _ = parts[-1]  # OCTET STRING holding GeneralNames
            _, names_start, names_end = _read(der, value_start)
            for name_tag, ns, ne in _items(der, names_start, names_end):
                if name_tag == 0x82:  # dNSName
                    dns_names.append(der[ns:ne].decode("ascii", "replace"))
                elif name_tag == 0x87 and ne - ns in (4, 16):  # iPAddress
                    ips.append(str(ipaddress.ip_address(der[ns:ne])))
    return Certificate(tuple(common_names), tuple(dns_names), tuple(ips))


# -- SSL contexts ----------------------------------------------------------------------------


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server-side context for one certificate chain and key; ssl.SSLError when they do not fit."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # ingress-nginx's ssl-protocols: TLSv1.2 TLSv1.3
    context.set_alpn_protocols(["http/1.1"])
    with _pem_file(cert_pem) as cert_path, _pem_file(key_pem) as key_path:
        context.load_cert_chain(cert_path, key_path)
    return context


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    """A path to `data` that never touches a disk where it can (an anonymous memory file on Linux)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("timoner-ingress-pem", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="timoner-ingress-") as tmp:
        path = Path(tmp) / "pem"
        path.touch(0o600)
        path.write_bytes(data)
        yield str(path)


async def fake_certificate(timeout: float = 60.0) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a fresh self-signed certificate, made by a child process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "timoner.network._ingress_fakecert",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"making the fake certificate failed: {err.decode(errors='replace').strip()}")
    cert, sep, key = out.partition(b"-----BEGIN PRIVATE KEY-----")
    if not sep:
        raise RuntimeError("making the fake certificate failed: no key in its output")
    return cert.strip() + b"\n", sep + key
