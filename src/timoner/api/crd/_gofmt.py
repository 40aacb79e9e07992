"""How Go's `fmt` prints the JSON values that appear in custom-resource validation messages.

kube-openapi builds its messages with `%v` of float64 schema bounds (`should be
greater than or equal to 1e+06`), and `field.Duplicate` prints list-map keys
with `%#v` of a `map[string]interface {}`. These helpers reproduce both.
"""

from __future__ import annotations

import json
from typing import Any

from timoner.api.patch._gofmt import go_float

__all__ = ["go_interface", "go_number", "go_value"]


def go_number(value: Any) -> str:
    """`%v` of a JSON number: int64 as is, float64 in Go's shortest `%g` form (`1e+06`, `0.5`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return go_float(float(value))


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
