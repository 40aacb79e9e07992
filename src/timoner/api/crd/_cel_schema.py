"""What CEL rules need to know of a schema: property-name escaping, formatted strings, field paths.

- `escape_property`: how a rule spells a property that is not a CEL identifier
  (`foo-bar` is `self.foo__dash__bar`), upstream's k8s.io/apiserver/pkg/cel escaping;
- `FORMATS`: strings of format date-time, date, duration and byte reach rules as
  timestamps, durations and bytes (upstream's UnstructuredToVal);
- `normalized_field_path`: a rule's `fieldPath` checked and normalized as upstream's
  ValidFieldPath does (`.spec.labels['a.b']` -> `spec.labels[a.b]`);
- `undefined_field`: the `undefined field 'x'` compile errors cel-go's type checker
  reports for selections the schema does not declare.
"""

from __future__ import annotations

import base64
import datetime
import re
from typing import Any

from timoner.api.crd._cel_compile import issue, strip_strings

__all__ = ["FORMATS", "escape_property", "normalized_field_path", "undefined_field"]

_RESERVED = frozenset(
    "true false null in as break const continue else for function if import let loop package namespace "
    "return var void while".split()
)
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPABLE = re.compile(r"[A-Za-z0-9_./-]+")


def escape_property(name: str) -> str | None:
    """How a rule spells a property (`foo-bar` -> `foo__dash__bar`); None when it cannot.

    upstream's k8s.io/apiserver/pkg/cel escaping.
    """
    if name in _RESERVED:
        return f"__{name}__"
    if _PLAIN_NAME.fullmatch(name) and "__" not in name:
        return name
    if not _ESCAPABLE.fullmatch(name) or name[0].isdigit():
        return None
    return (
        name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__").replace("/", "__slash__")
    )


def _date_time(text: str) -> Any:
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return text  # not a date-time after all: schema validation reports it
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _date(text: str) -> Any:
    try:
        return datetime.datetime.combine(datetime.date.fromisoformat(text), datetime.time(), datetime.UTC)
    except ValueError:
        return text


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400,
                   "w": 604800}


def _duration(text: str) -> Any:
    # Go's time.ParseDuration, plus the days and weeks go-openapi's strfmt accepts.
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return datetime.timedelta(0)
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(a + b for a, b in parts) != body:
        return text
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    return datetime.timedelta(seconds=-seconds if text.startswith("-") else seconds)


def _byte(text: str) -> Any:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return text


FORMATS = {"date-time": _date_time, "date": _date, "duration": _duration, "byte": _byte}


_SELECTION = re.compile(r"(?<![\w.])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)+)")
_STEP = re.compile(r"\s*(\.)\s*([A-Za-z_]\w*)")
_MACRO = re.compile(
    r"(?<![\w.])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)*)\s*\.\s*(?:all|exists_one|exists|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,"
)
_METADATA = {"type": "object", "properties": {"name": {"type": "string"}, "generateName": {"type": "string"}}}


def undefined_field(text: str, schema: dict[str, Any], root: bool) -> str | None:
    """cel-go's `undefined field 'x'` for `self.a.x` where the schema declares no `x` at `self.a`.

    Selection chains are followed from `self`, `oldSelf` and the variables of
    comprehensions over their lists (`self.items.all(i, i.name != '')`); a step into a
    map, an int-or-string or a schema that keeps unknown fields stops the check
    (cel-go types those dynamically). Like cel-go, every issue is reported, at the
    selecting `.`, or at the `(` of a `has(...)`.
    """
    code = strip_strings(text)
    roots: dict[str, tuple[dict[str, Any], bool]] = {"self": (schema, root), "oldSelf": (schema, root)}
    bindings: dict[str, list[dict[str, Any] | None]] = {}
    for m in _MACRO.finditer(code):
        var, receiver = m.group(3), roots.get(m.group(1))
        if var in ("self", "oldSelf"):
            continue
        target = None
        if receiver is not None:
            found = _follow(code, text, receiver[0], receiver[1], m.group(2), m.start(2), None)
            if isinstance(found, dict) and isinstance(found.get("items"), dict):
                target = found["items"]
        bindings.setdefault(var, []).append(target)
        if len(bindings[var]) == 1 and target is not None:
            roots[var] = (target, False)
        else:
            roots.pop(var, None)  # bound twice: which one a selection means needs scopes
    issues: list[str] = []
    for m in _SELECTION.finditer(code):
        start = roots.get(m.group(1))
        if start is not None:
            _follow(code, text, start[0], start[1], m.group(2), m.start(2), issues, selection_start=m.start())
    return "\n".join(issues) or None


def _follow(
    code: str, text: str, node: dict[str, Any] | None, is_root: bool, chain: str, offset: int,
    issues: list[str] | None, *, selection_start: int = 0,
) -> dict[str, Any] | None:
    """The schema `chain` (`.a.b`) leads to from `node`; None where it cannot say.

    With `issues`, an undeclared field is reported there (and None returned).
    """
    steps = list(_STEP.finditer(chain))
    for n, step in enumerate(steps):
        name = step.group(2)
        after = code[offset + step.end() :].lstrip()
        if after.startswith("(") or node is None:
            return None  # a method call, not a field
        if is_root or node.get("x-kubernetes-embedded-resource"):
            if name in ("apiVersion", "kind"):
                return None
            if name == "metadata":
                node, is_root = _METADATA, False
                continue
        is_root = False
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            return None
        by_cel_name = {escape_property(k): v for k, v in props.items()}
        if name in by_cel_name:
            node = by_cel_name[name] if isinstance(by_cel_name[name], dict) else None
            continue
        if node.get("x-kubernetes-preserve-unknown-fields") or isinstance(node.get("additionalProperties"), dict):
            return None
        if issues is not None:
            at = offset + step.start(1)
            has_call = re.search(r"\bhas\s*\(\s*$", code[:selection_start])
            if has_call and n == len(steps) - 1 and after.startswith(")"):
                at = code.index("(", has_call.start())
            issues.append(issue(text, at, f"undefined field '{name}'"))
        return None
    return node


def normalized_field_path(field_path: Any, schema: dict[str, Any], *, strict: bool = False) -> str | None:
    """upstream's ValidFieldPath: `.spec.foo['bar']` -> `spec.foo[bar]`, None if not a path of `schema`.

    Not strict (a rule already stored), an unresolvable path is kept as written, minus the leading dot.
    """
    if not isinstance(field_path, str) or not field_path.strip():
        return "" if not strict else None
    try:
        return _resolve_field_path(field_path, schema)
    except ValueError:
        return None if strict else field_path.lstrip(".")


_FP_TOKEN = re.compile(r"'(?:\\.|[^'\\])*'|[.\[\]]|[^.\[\]']+")
_FP_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "'": "'", "\\": "\\"}


def _resolve_field_path(field_path: str, schema: dict[str, Any]) -> str:
    tokens = _FP_TOKEN.findall(field_path)
    if "".join(tokens) != field_path:
        raise ValueError("invalid path")
    out = ""
    node: dict[str, Any] = schema
    i = 0

    def step(name: str, bracketed: bool) -> None:
        nonlocal out, node
        props, add = node.get("properties"), node.get("additionalProperties")
        if props is not None:
            if name not in props:
                raise ValueError("does not refer to a valid field")
            node = props[name]
            out = f"{out}.{name}" if out else name
        elif isinstance(add, dict):
            node = add
            out = f"{out}[{name}]"
        else:
            raise ValueError("does not refer to a valid field")

    while i < len(tokens):
        tok = tokens[i]
        if tok == ".":
            if i + 1 >= len(tokens) or tokens[i + 1] in ".[]":
                raise ValueError("unexpected end of JSON path")
            step(tokens[i + 1], False)
            i += 2
        elif tok == "[":
            if i + 2 >= len(tokens) or tokens[i + 2] != "]":
                raise ValueError("unexpected end of JSON path")
            quoted = tokens[i + 1]
            if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
                raise ValueError("expected single quoted string")
            raw = quoted[1:-1]
            unescaped = re.sub(r"\\(.)", lambda m: _FP_ESCAPES.get(m.group(1)) or _bad_escape(m.group(0)), raw)
            step(unescaped, True)
            i += 3
        else:
            raise ValueError(f"expected [ or . but got: {tok}")
    return out


def _bad_escape(text: str) -> str:
    raise ValueError(f"invalid escape char {text}")
