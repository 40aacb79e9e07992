"""Kubernetes resource quantities (`resource.Quantity`): parsing and canonical formatting.

A quantity is a decimal number with an optional suffix: decimal SI
(`n u m k M G T P E`), binary SI (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent
(`e3`, `E-2`). The value is held as an exact `Decimal`; the suffix family only
decides how the value prints. Upstream (k8s.io/apimachinery/pkg/api/resource)
is followed closely, including its corners, because the API server hands the
canonical string back to clients and `kubectl diff` compares them:

- values finer than a nanounit round *up* (away from zero) to the next
  nanounit, so asking for "some" resource never becomes zero;
- decimal-SI and binary-SI values that need the arbitrary-precision path
  are capped at 2^63-1, while small inputs with big suffixes ("10E") are
  kept exactly, as upstream's int64 fast path does;
- the canonical form uses the smallest suffix that keeps an integer
  mantissa (`1.5` -> `1500m`, `1.5Gi` -> `1536Mi`); binary values below 1Ki
  or with a fractional part print as decimal SI.
"""

from __future__ import annotations

import decimal
import enum
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "Quantity",
    "QuantityFormat",
    "canonicalize_quantity",
    "format_quantity",
    "is_valid_quantity",
    "parse_quantity",
]

_FORMAT_WRONG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_SUFFIX_WRONG = "unable to parse quantity's suffix"
_NUMERIC_WRONG = "unable to parse numeric part of quantity"

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXPONENT = {v: k for k, v in _BINARY_SUFFIXES.items()}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_INT64_MAX = (1 << 63) - 1
_NANO = Decimal("1e-9")


class QuantityFormat(enum.Enum):
    """Which suffix family a quantity prints with."""

    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


@dataclass(frozen=True, slots=True)
class _Scanned:
    """The pieces of a quantity string, as upstream's scanner splits them."""

    positive: bool
    num: str
    denom: str
    suffix: str


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact quantity and the suffix family it was written in; `str()` is the canonical form."""

    value: Decimal
    format: QuantityFormat = QuantityFormat.DECIMAL_SI

    @classmethod
    def parse(cls, text: str | int | float) -> Quantity:
        """Parse a quantity string (or a JSON number); raise ValueError on bad input."""
        return _parse(_as_text(text))

    def __str__(self) -> str:
        return _canonical(self.value, self.format)


def parse_quantity(s: str | int | float) -> Decimal:
    """The exact value of a quantity such as `100m`, `1.5Gi` or `1e3`; ValueError on bad input."""
    return Quantity.parse(s).value


def format_quantity(value: Decimal, *, binary: bool = False) -> str:
    """The canonical string of a value, in binary SI (`Mi`, `Gi`) when asked and exact, else decimal SI.

    Values finer than a nanounit round up first, as a parsed quantity would.
    """
    fmt = QuantityFormat.BINARY_SI if binary else QuantityFormat.DECIMAL_SI
    return _canonical(_round_up_to_nano(Decimal(value)), fmt)


def canonicalize_quantity(s: str | int | float) -> str:
    """The canonical spelling upstream stores for a quantity (`1000m` -> `1`, `1024Mi` -> `1Gi`)."""
    return str(Quantity.parse(s))


def is_valid_quantity(s: object) -> bool:
    """Whether `s` parses as a quantity."""
    if not isinstance(s, str | int | float) or isinstance(s, bool):
        return False
    try:
        Quantity.parse(s)
    except ValueError:
        return False
    return True


def _as_text(text: str | int | float) -> str:
    # JSON numbers arrive as int/float; upstream parses their literal text.
    if isinstance(text, bool):
        raise ValueError(_FORMAT_WRONG)
    if isinstance(text, int):
        return str(text)
    if isinstance(text, float):
        if text != text or text in (float("inf"), float("-inf")):
            raise ValueError(_FORMAT_WRONG)
        return repr(text)
    if isinstance(text, str):
        return text
    raise ValueError(_FORMAT_WRONG)


def _scan(text: str) -> _Scanned:
    """Split sign, integer digits, fraction digits and suffix like upstream's parseQuantityString."""
    end = len(text)
    pos = 0
    positive = True
    if text[0] in "+-":
        positive = text[0] == "+"
        pos = 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return _Scanned(positive, "0", "", "")
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    num = text[start:pos] or "0"
    denom = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise ValueError(_FORMAT_WRONG)
    return _Scanned(positive, num, denom, text[suffix_start:])


def _interpret_suffix(suffix: str) -> tuple[int, int, QuantityFormat]:
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], QuantityFormat.DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], QuantityFormat.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        digits = suffix[1:]
        body = digits[1:] if digits[0] in "+-" else digits
        if body and all(c in _DIGITS for c in body):
            exponent = int(digits)
            if abs(exponent) <= (1 << 31) - 1:
                return 10, exponent, QuantityFormat.DECIMAL_EXPONENT
    raise ValueError(_SUFFIX_WRONG)


def _parse(text: str) -> Quantity:
    if not text:
        raise ValueError(_FORMAT_WRONG)
    scanned = _scan(text)
    base, exponent, fmt = _interpret_suffix(scanned.suffix)
    sign = 1 if scanned.positive else -1
    fast = _fast_path(scanned, base, exponent, fmt)
    if fast is not None:
        return Quantity(_normalize_zero(sign * fast), fmt)
    digits = len(scanned.num) + len(scanned.denom)
    ctx = decimal.Context(prec=digits + 64, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
    try:
        amount = Decimal(f"{scanned.num}.{scanned.denom or '0'}")
    except decimal.InvalidOperation as exc:  # pragma: no cover - the scanner only lets digits through
        raise ValueError(_NUMERIC_WRONG) from exc
    amount = amount.scaleb(exponent, ctx) if base == 10 else ctx.multiply(amount, Decimal(1 << exponent))
    amount = _round_up_to_nano(amount)
    # Upstream caps the SI families at int64 on this path (and only on this path).
    if fmt is not QuantityFormat.DECIMAL_EXPONENT and amount > _INT64_MAX:
        amount = Decimal(_INT64_MAX)
    return Quantity(_normalize_zero(sign * amount), fmt)


def _fast_path(scanned: _Scanned, base: int, exponent: int, fmt: QuantityFormat) -> Decimal | None:
    """The exact int64 path upstream takes for short inputs: no rounding and, notably, no cap."""
    if fmt is QuantityFormat.BINARY_SI:
        if exponent < 0 or scanned.denom:
            return None
        scale = 0
        mantissa = 1 << exponent
        precision = 15 - len(scanned.num) - int(exponent * 3 / 10) - 1
    else:
        scale = exponent
        mantissa = 1
        precision = 18 - (len(scanned.num) + len(scanned.denom))
    if precision < 0:
        return None
    scale -= len(scanned.denom)
    if scale < -9:
        return None
    value = int(scanned.num + scanned.denom)
    result = value * mantissa
    if value > _INT64_MAX or result > _INT64_MAX:
        return None
    return Decimal(result).scaleb(scale) if base == 10 else Decimal(result)


def _round_up_to_nano(amount: Decimal) -> Decimal:
    if amount.is_zero() or amount.as_tuple().exponent >= -9:  # type: ignore[operator]
        return amount
    ctx = decimal.Context(prec=max(len(amount.as_tuple().digits), 1) + 40, rounding=decimal.ROUND_UP)
    return amount.quantize(_NANO, context=ctx)


def _normalize_zero(amount: Decimal) -> Decimal:
    return Decimal(0) if amount.is_zero() else amount


def _canonical(value: Decimal, fmt: QuantityFormat) -> str:
    if value.is_zero():
        return "0"
    if fmt is QuantityFormat.BINARY_SI:
        if -1024 < value < 1024 or value != value.to_integral_value():
            fmt = QuantityFormat.DECIMAL_SI
        else:
            return _canonical_binary(int(value))
    return _canonical_decimal(value, fmt)


def _canonical_decimal(value: Decimal, fmt: QuantityFormat) -> str:
    sign, digits, exp = value.as_tuple()
    mantissa = int("".join(map(str, digits)))
    exponent = int(exp)
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    # Lower the exponent to a multiple of three so it maps onto an SI suffix.
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    number = f"{'-' if sign else ''}{mantissa}"
    if fmt is QuantityFormat.DECIMAL_EXPONENT:
        return number if exponent == 0 else f"{number}e{exponent}"
    suffix = _DECIMAL_BY_EXPONENT.get(exponent)
    if suffix is None:
        # Outside n..E (only reachable for hand-made values): print plainly rather than wrongly.
        return f"{number}e{exponent}"
    return number + suffix


def _canonical_binary(value: int) -> str:
    magnitude = abs(value)
    exponent = 0
    while magnitude % 1024 == 0 and exponent < 60:
        magnitude //= 1024
        exponent += 10
    return f"{'-' if value < 0 else ''}{magnitude}{_BINARY_BY_EXPONENT.get(exponent, '')}"
