"""Building blocks shared by the table printers: columns, printers, and upstream's formatters.

A `Printer` pairs a kind's column definitions with a function that turns one
stored object (a plain JSON dict) into that row's cells. The functions mirror
upstream `pkg/printers/internalversion/printers.go` (v1.32), which runs on the
*internal* Go types: a missing field reads as that type's zero value (`0`,
`""`, an empty list), never as an error. The helpers here (`mapping`,
`seq`, `text`, `integer`) give dict access the same zero-value semantics so a
half-filled object can always be printed.

Column descriptions upstream come from `SwaggerDoc()`, generated from the same
Go comments as the OpenAPI descriptions; a `Column` therefore names the
OpenAPI definition and property and resolves the text lazily from
`timoner.api.schema` (a missing entry yields `""`, as a Go map lookup would).

Times follow `translateTimestampSince`: `<unknown>` for a missing timestamp,
otherwise `human_duration(now - t)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from timoner.api.schema import definitions

__all__ = [
    "AGE",
    "NAME",
    "Column",
    "Printer",
    "age",
    "bool_ptr",
    "container_cells",
    "doc",
    "format_label_selector",
    "format_labels",
    "human_duration",
    "integer",
    "label_selector_string",
    "mapping",
    "name_of",
    "parse_time",
    "seq",
    "since",
    "text",
]

META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
UNKNOWN = "<unknown>"
NONE = "<none>"


# --- zero-value accessors -------------------------------------------------------------------------


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is an object, else an empty one (Go's zero struct/map)."""
    return value if isinstance(value, Mapping) else {}


def seq(value: Any) -> Sequence[Any]:
    """`value` if it is a list, else an empty one (Go's nil slice)."""
    return value if isinstance(value, list) else []


def text(value: Any) -> str:
    """`value` if it is a string, else `""` (Go's zero string)."""
    return value if isinstance(value, str) else ""


def integer(value: Any) -> int:
    """`value` if it is an integer, else 0; JSON booleans are not numbers here."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def name_of(obj: Mapping[str, Any]) -> str:
    return text(mapping(obj.get("metadata")).get("name"))


# --- columns and printers -------------------------------------------------------------------------


@functools.cache
def doc(definition: str, prop: str) -> str:
    """The OpenAPI description of `definition.properties[prop]`, or "" when there is none."""
    schema = definitions().get(definition)
    if schema is None:
        return ""
    return text(mapping(mapping(schema.get("properties")).get(prop)).get("description"))


@dataclass(frozen=True, slots=True)
class Column:
    """One `TableColumnDefinition`; `description` is literal text or an OpenAPI (definition, property)."""

    name: str
    type: str = "string"
    description: str | tuple[str, str] = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict[str, Any]:
        description = self.description if isinstance(self.description, str) else doc(*self.description)
        # Upstream emits all five keys (no omitempty on TableColumnDefinition).
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": description,
            "priority": self.priority,
        }


@dataclass(frozen=True, slots=True)
class Printer:
    """How one kind prints: its columns and `cells(obj, now)`; optional row `conditions(obj)`."""

    columns: tuple[Column, ...]
    cells: Callable[[Mapping[str, Any], datetime], list[Any]]
    conditions: Callable[[Mapping[str, Any]], list[dict[str, Any]]] | None = None


NAME = Column("Name", description=(META, "name"), format="name")
AGE = Column("Age", description=(META, "creationTimestamp"))
CONTAINERS = Column("Containers", description="Names of each container in the template.", priority=1)
IMAGES = Column("Images", description="Images referenced by each container in the template.", priority=1)


# --- durations and timestamps ---------------------------------------------------------------------

_NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * _NS_PER_SECOND
_NS_PER_HOUR = 60 * _NS_PER_MINUTE


def human_duration(seconds: float) -> str:
    """Upstream `duration.HumanDuration`: about two or three significant figures of a duration.

    Up to two seconds in the past reads as `0s` (clock skew between machines);
    further in the past is `<invalid>`.
    """
    return _human_ns(round(seconds * _NS_PER_SECOND))


def _human_ns(d: int) -> str:
    # Go truncates toward zero when it converts durations to whole units.
    seconds = int(d / _NS_PER_SECOND)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = d // _NS_PER_MINUTE
    if minutes < 10:
        s = (d // _NS_PER_SECOND) % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = d // _NS_PER_HOUR
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (`Time` or `MicroTime`) as an aware datetime; None if missing or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def elapsed(start: datetime, end: datetime) -> str:
    """`HumanDuration(end - start)`, computed on whole microseconds so no float rounding creeps in."""
    delta = aware(end) - aware(start)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _human_ns(micros * 1_000)


def since(value: Any, now: datetime) -> str:
    """Upstream `translateTimestampSince`: `<unknown>` for a zero timestamp."""
    moment = parse_time(value)
    return UNKNOWN if moment is None else elapsed(moment, now)


def age(obj: Mapping[str, Any], now: datetime) -> str:
    return since(mapping(obj.get("metadata")).get("creationTimestamp"), now)


# --- labels, selectors, containers ----------------------------------------------------------------


def format_labels(labels: Any) -> str:
    """`labels.FormatLabels`: sorted `k=v` pairs joined by commas, `<none>` when empty."""
    pairs = mapping(labels)
    if not pairs:
        return NONE
    return ",".join(f"{key}={pairs[key]}" for key in sorted(pairs))


class _InvalidSelector(ValueError):
    pass


_OPERATORS = {"In": " in ", "NotIn": " notin ", "Exists": "", "DoesNotExist": ""}


def label_selector_string(selector: Any) -> str:
    """`LabelSelectorAsSelector(s).String()`; raises ValueError for a selector upstream rejects.

    A missing or empty selector prints as "" (Nothing / Everything).
    Requirements are sorted by key and set values sorted, as upstream prints them.
    """
    sel = mapping(selector)
    requirements: list[tuple[str, str]] = []
    for key, value in sorted(mapping(sel.get("matchLabels")).items()):
        requirements.append((key, f"{key}={value}"))
    for expression in seq(sel.get("matchExpressions")):
        expression = mapping(expression)
        key, operator = text(expression.get("key")), text(expression.get("operator"))
        values = [text(v) for v in seq(expression.get("values"))]
        if operator not in _OPERATORS:
            raise _InvalidSelector(f"{operator!r} is not a valid label selector operator")
        if operator in ("In", "NotIn"):
            if not values:
                raise _InvalidSelector("for 'in', 'notin' operators, values set can't be empty")
            requirements.append((key, f"{key}{_OPERATORS[operator]}({','.join(sorted(values))})"))
        else:
            if values:
                raise _InvalidSelector("values set must be empty for exists and does not exist")
            requirements.append((key, key if operator == "Exists" else f"!{key}"))
    # Upstream sorts requirements by key only; Python's stable sort keeps ties in input order.
    requirements.sort(key=lambda item: item[0])
    return ",".join(rendered for _, rendered in requirements)


def format_label_selector(selector: Any) -> str:
    """`metav1.FormatLabelSelector`: `<none>` for an empty selector, `<error>` for an invalid one."""
    try:
        rendered = label_selector_string(selector)
    except ValueError:
        return "<error>"
    return rendered or NONE


def container_cells(containers: Any) -> tuple[str, str]:
    """`layoutContainerCells`: container names and images, each joined by commas."""
    items = [mapping(c) for c in seq(containers)]
    return ",".join(text(c.get("name")) for c in items), ",".join(text(c.get("image")) for c in items)


def bool_ptr(value: Any) -> str:
    """`printBoolPtr`: True / False, or `<unset>` for a nil pointer."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return "<unset>"
