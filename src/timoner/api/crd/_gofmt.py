"""How Go's `fmt` prints the JSON values that appear in custom-resource validation messages.

kube-openapi builds its messages with `%v` of float64 schema bounds (`should be
greater than or equal to 1e+06`), and `field.Duplicate` prints list-map keys
with `%#v` of a `map[string]interface {}`. These helpers reproduce both.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

__all__ = ["go_interface", "go_number", "go_value"]


def go_number(value: Any) -> str:
    """`%v` of a JSON number: int64 as is, float64 in Go's shortest `%g` form (`1e+06`, `0.5`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    f = float(value)
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    if f == 0:
        return "0"
    # repr() gives the shortest round-trip digits, as strconv does; only the switch to
    # exponent form differs (Go's %v: exponent < -4 or >= 6).
    sign, digits, exponent = Decimal(repr(f)).normalize().as_tuple()
    text = "".join(map(str, digits))
    decimal_exp = len(text) + int(exponent) - 1
    prefix = "-" if sign else ""
    if decimal_exp < -4 or decimal_exp >= 6:
        body = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{body}e{'+' if decimal_exp >= 0 else '-'}{abs(decimal_exp):02d}"
    fixed = format(Decimal(repr(abs(f))), "f")
    if "." in fixed:
        fixed = fixed.rstrip("0").rstrip(".")
    return prefix + fixed


def go_interface(value: Any) -> str:
    """`%#v` of a value held in an `interface {}` (a decoded JSON value inside a map or slice)."""
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool | int | float):
        return go_number(value)
    if isinstance(value, dict):
        return go_value(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_interface(v) for v in value) + "}"
    return str(value)


def go_value(value: dict[str, Any]) -> str:
    """`%#v` of a `map[string]interface {}` (keys sorted, as Go's fmt sorts them)."""
    inner = ", ".join(f"{json.dumps(k, ensure_ascii=False)}:{go_interface(v)}" for k, v in sorted(value.items()))
    return "map[string]interface {}{" + inner + "}"
