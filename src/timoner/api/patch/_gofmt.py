"""Go's `%v` rendering of decoded JSON, for error messages copied from upstream.

Upstream strategic-merge errors print maps and lists with `fmt`'s `%v`
(`map[name:web ports:[80]]`) and name types with `reflect.TypeOf`; clients
and people compare these texts, so they are reproduced here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["go_float", "go_type", "go_value"]


def go_value(value: Any) -> str:
    """`fmt.Sprintf("%v", value)` for a value decoded from JSON."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        items = " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value))
        return f"map[{items}]"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_float(value: float) -> str:
    # apimachinery's json.Unmarshal turns a whole float64 that fits an int64 into that int64,
    # so only the other numbers reach %v as float64s.
    if value.is_integer() and -(2**63) <= value < 2**63:
        return str(int(value))
    return go_float(value)


def go_float(value: float) -> str:
    """`%v` of a float64: strconv's shortest `%g`, exponent form for exponents < -4 or >= 6 (`1e+06`)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "0"
    # repr() gives the shortest round-trip digits, as strconv does; only the switch to
    # exponent form differs.
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    decimal_exp = len(text) + int(exponent) - 1
    prefix = "-" if sign else ""
    if decimal_exp < -4 or decimal_exp >= 6:
        body = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{body}e{'+' if decimal_exp >= 0 else '-'}{abs(decimal_exp):02d}"
    fixed = format(Decimal(repr(abs(value))), "f")
    if "." in fixed:
        fixed = fixed.rstrip("0").rstrip(".")
    return prefix + fixed


def json_kind(value: Any) -> str:
    """The JSON kind Go's decoder names in "cannot unmarshal <kind> into ..." errors."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def go_type(value: Any) -> str:
    """`reflect.TypeOf(value)` as Go prints it, for values decoded by upstream's JSON decoder."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return type(value).__name__
