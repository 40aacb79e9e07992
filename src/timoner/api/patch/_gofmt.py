"""Go's `%v` rendering of decoded JSON, for error messages copied from upstream.

Upstream strategic-merge errors print maps and lists with `fmt`'s `%v`
(`map[name:web ports:[80]]`) and name types with `reflect.TypeOf`; clients
and people compare these texts, so they are reproduced here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["go_type", "go_value"]


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
    # %v of a float64 is strconv's 'g' with the shortest representation and a two-digit exponent.
    if math.isinf(value) or math.isnan(value):
        return {math.inf: "+Inf", -math.inf: "-Inf"}.get(value, "NaN")
    exponent = math.floor(math.log10(abs(value))) if value else 0
    if -4 <= exponent < 21:
        text = repr(value)
        if "e" in text:
            text = f"{value:.17f}".rstrip("0")
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exp = repr(value).partition("e")
    if not exp:
        mantissa, _, exp = f"{value:e}".partition("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
    sign = "-" if exp.startswith("-") else "+"
    return f"{mantissa.removesuffix('.0')}e{sign}{exp.lstrip('+-').rjust(2, '0')}"


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
