"""The string formats apiextensions-apiserver validates (kube-openapi's strfmt registry).

Only the formats upstream registers for custom resources are checked; any
other `format` is ignored, as upstream ignores it.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import urlparse

__all__ = ["FORMATS"]

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?"
)
_HOSTNAME_RE = re.compile(
    r"(?=.{1,255}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
_MAC_RE = re.compile(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}|([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}")
_HEXCOLOR_RE = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_RGBCOLOR_RE = re.compile(
    r"rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,"
    r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)"
)
_SSN_RE = re.compile(r"\d{3}[- ]?\d{2}[- ]?\d{4}")
_OBJECTID_RE = re.compile(r"[0-9a-fA-F]{24}")
_DURATION_RE = re.compile(
    r"[-+]?(\d+(\.\d+)?\s*(ns|us|µs|ms|s|m|h|d|w|"
    r"nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)\s*)+"
)
_UUID_RE = {
    "uuid": re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I),
    "uuid3": re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I),
    "uuid4": re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}", re.I),
    "uuid5": re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}", re.I),
}


def _valid_date(text: str) -> bool:
    if not _DATE_RE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _valid_datetime(text: str) -> bool:
    if not _DATETIME_RE.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def _valid_ip(text: str, version: int) -> bool:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    return addr.version == version


def _valid_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def _valid_byte(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


def _valid_uri(text: str) -> bool:
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return bool(parsed.scheme or parsed.path or parsed.netloc) and " " not in text


def _valid_uuid(fmt: str, text: str) -> bool:
    if not _UUID_RE[fmt].fullmatch(text):
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _isbn10(text: str) -> bool:
    digits = text.replace("-", "").replace(" ", "")
    if not re.fullmatch(r"\d{9}[\dXx]", digits):
        return False
    total = sum((10 - i) * (10 if c in "Xx" else int(c)) for i, c in enumerate(digits))
    return total % 11 == 0


def _isbn13(text: str) -> bool:
    digits = text.replace("-", "").replace(" ", "")
    if not re.fullmatch(r"\d{13}", digits):
        return False
    return sum((1 if i % 2 == 0 else 3) * int(c) for i, c in enumerate(digits)) % 10 == 0


def _luhn(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    if not re.fullmatch(r"\d{12,19}", digits):
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# The string formats apiextensions-apiserver accepts (apiservervalidation.supportedFormats); any
# other format is ignored, as upstream does.
FORMATS: dict[str, Callable[[str], Any]] = {
    "bsonobjectid": _OBJECTID_RE.fullmatch,
    "uri": _valid_uri,
    "email": _EMAIL_RE.fullmatch,
    "hostname": _HOSTNAME_RE.fullmatch,
    "ipv4": lambda s: _valid_ip(s, 4),
    "ipv6": lambda s: _valid_ip(s, 6),
    "cidr": _valid_cidr,
    "mac": _MAC_RE.fullmatch,
    "uuid": lambda s: _valid_uuid("uuid", s),
    "uuid3": lambda s: _valid_uuid("uuid3", s),
    "uuid4": lambda s: _valid_uuid("uuid4", s),
    "uuid5": lambda s: _valid_uuid("uuid5", s),
    "isbn": lambda s: _isbn10(s) or _isbn13(s),
    "isbn10": _isbn10,
    "isbn13": _isbn13,
    "creditcard": _luhn,
    "ssn": _SSN_RE.fullmatch,
    "hexcolor": _HEXCOLOR_RE.fullmatch,
    "rgbcolor": _RGBCOLOR_RE.fullmatch,
    "byte": _valid_byte,
    "date": _valid_date,
    "datetime": _valid_datetime,
    "date-time": _valid_datetime,
    "duration": _DURATION_RE.fullmatch,
}


