"""Field paths and the cause constructors of upstream `field.Error`.

Upstream builds every validation error from a path (`spec.containers[0].image`),
an error type and, for most types, the offending value printed the way Go's
`fmt` prints it. Clients show these messages verbatim and people search for
them, so the wording here mirrors `k8s.io/apimachinery/pkg/util/validation/field`
exactly: `Required value`, `Invalid value: "x": detail`, `Unsupported value:
"x": supported values: "a", "b"`, `Duplicate value: "x"`, `Forbidden: detail`,
`Too long: must have at most N bytes`, `Not found: "x"`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from timoner.api.errors import Cause

__all__ = [
    "Path",
    "Raw",
    "duplicate",
    "forbidden",
    "invalid",
    "not_found",
    "not_supported",
    "required",
    "show",
    "too_long",
    "too_many",
]


@dataclass(frozen=True, slots=True)
class Path:
    """A field path printed as upstream prints it: `spec.ports[0].name`, `data[key]`."""

    text: str = ""

    def child(self, *names: str) -> Path:
        text = self.text
        for name in names:
            text = f"{text}.{name}" if text else name
        return Path(text)

    def index(self, i: int) -> Path:
        return Path(f"{self.text}[{i}]")

    def key(self, k: str) -> Path:
        return Path(f"{self.text}[{k}]")

    def __str__(self) -> str:
        return self.text


class Raw(str):
    """A value Go prints without quotes (an `IntOrString`, a `Quantity`: both are `fmt.Stringer`)."""

    __slots__ = ()


def _quote(text: str) -> str:
    # Go's %q and JSON agree on the escapes that matter here (quotes, backslashes, controls).
    return json.dumps(text, ensure_ascii=False)


def show(value: Any) -> str:
    """The value as Go's `fmt` would print it in a `field.Error`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        # %#v of a map[string]string; Go's fmt sorts map keys.
        inner = ", ".join(f"{_quote(k)}:{_quote(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(_quote(v) for v in value) + "}"
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _cause(reason: str, path: Path, body: str, detail: str) -> Cause:
    return Cause(reason, f"{body}: {detail}" if detail else body, str(path))


def required(path: Path, detail: str = "") -> Cause:
    return _cause("FieldValueRequired", path, "Required value", detail)


def invalid(path: Path, value: Any, detail: str = "") -> Cause:
    return _cause("FieldValueInvalid", path, f"Invalid value: {show(value)}", detail)


def not_supported(path: Path, value: Any, supported: Iterable[str]) -> Cause:
    values = ", ".join(_quote(v) for v in supported)
    detail = f"supported values: {values}" if values else ""
    return _cause("FieldValueNotSupported", path, f"Unsupported value: {show(value)}", detail)


def duplicate(path: Path, value: Any) -> Cause:
    return _cause("FieldValueDuplicate", path, f"Duplicate value: {show(value)}", "")


def not_found(path: Path, value: Any) -> Cause:
    return _cause("FieldValueNotFound", path, f"Not found: {show(value)}", "")


def forbidden(path: Path, detail: str) -> Cause:
    return _cause("FieldValueForbidden", path, "Forbidden", detail)


def too_long(path: Path, max_length: int) -> Cause:
    return _cause("FieldValueTooLong", path, "Too long", f"must have at most {max_length} bytes")


def too_many(path: Path, actual: int, max_items: int) -> Cause:
    return _cause("FieldValueTooMany", path, f"Too many: {actual}", f"must have at most {max_items} items")
