"""Compiling `x-kubernetes-validations` rules, cached, with cel-go's compile errors.

The engine parses; cel-go also type-checks against the schema. Two of its checks
catch most mistakes in practice and are done here: references to undeclared
variables or functions (`undeclared reference to 'x' (in container '')`), and
selections of fields the schema does not declare (`undefined field 'x'`, see
`cel.py`). Other type errors (a rule that is not a bool, `'a' + 1`) surface when the
rule runs, in upstream's runtime words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from timoner.api.crd._cel_library import BUILTIN_FUNCTIONS, NAMESPACES, TYPE_NAMES, callbacks, engine

__all__ = ["CompiledRule", "compile_rule", "go_rule", "issue", "selected_fields", "strip_strings"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMPREHENSION = re.compile(
    r"\b(?:all|exists|exists_one|map|filter|transformList|transformMap)\s*\(\s*([A-Za-z_]\w*)\s*,"
    r"(?:\s*([A-Za-z_]\w*)\s*,)?"
)
_STRING = re.compile(
    r"""[rRbB]*(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")|//[^\n]*""", re.S
)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule, ready to run: its programs, or the compile errors upstream reports for it."""

    rule: str
    message: str
    message_expression: str
    reason: str | None
    field_path: str
    optional_old_self: bool
    program: Any | None
    message_program: Any | None
    error: str | None
    message_error: str | None
    uses_old_self: bool
    # The callbacks and namespaces the rule and its messageExpression call.
    functions: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    # The fields of `self`/`oldSelf` the rule selects, or None when it uses the value whole:
    # only those are converted for the engine, which costs ~5 us per map.
    self_fields: frozenset[str] | None = None
    old_fields: frozenset[str] | None = None

    @property
    def error_string(self) -> str:
        """upstream's ruleErrorString: the message if any, else the rule."""
        return self.message.strip() if self.message else self.rule.strip()

    @property
    def default_message(self) -> str:
        return self.message.strip() if self.message else f"failed rule: {self.rule.strip()}"


def strip_strings(text: str) -> str:
    """`text` with the insides of its string literals and its `//` comments blanked, offsets kept."""

    def blank(m: re.Match[str]) -> str:
        lit = m.group(0)
        if lit.startswith("//"):
            return " " * len(lit)
        return lit[0] + " " * (len(lit) - 2) + lit[-1]

    return _STRING.sub(blank, text)


def issue(text: str, offset: int, message: str) -> str:
    """cel-go's rendering of one compile issue: `ERROR: <input>:1:5: msg` with the line and a caret."""
    line_no = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    line = text[start : end if end >= 0 else len(text)]
    col = offset - start
    return f"ERROR: <input>:{line_no}:{col + 1}: {message}\n | {line}\n | {'.' * col}^"


def _parse_error(exc: Exception) -> str:
    text = str(exc)
    at = text.find("ERROR: ")
    text = text[at:] if at >= 0 else text
    # The engine's ANTLR messages are cel-go's; only the snippet's indent differs (" | " there).
    return "\n".join(" " + ln if ln.startswith("| ") or ln == "|" else ln for ln in text.split("\n"))


def _undeclared(text: str, refs: dict[str, list[str]], declared: frozenset[str]) -> str | None:
    """cel-go's `undeclared reference` issues, in source order (an approximation of its checker)."""
    code = strip_strings(text)
    bound = {name for m in _COMPREHENSION.finditer(code) for name in m.groups() if name}
    found: list[tuple[int, str]] = []
    for name in refs.get("variables", []):
        if name in declared or name in bound or name in TYPE_NAMES or name in NAMESPACES:
            continue
        m = re.search(rf"(?<![\w.]){re.escape(name)}\b", code)
        found.append((m.start() if m else 0, name))
    known = _known_functions()
    for name in refs.get("functions", []):
        if not _IDENT.fullmatch(name) or name in known:
            continue
        m = re.search(rf"\b{re.escape(name)}\s*(\()", code)
        found.append((m.start(1) if m else 0, name))
    issues = [issue(text, at, f"undeclared reference to '{name}' (in container '')") for at, name in sorted(found)]
    return "\n".join(issues) or None


@lru_cache(maxsize=1)
def _known_functions() -> frozenset[str]:
    return BUILTIN_FUNCTIONS | {name.rsplit(".", 1)[-1] for name in callbacks()}


@dataclass(frozen=True, slots=True)
class _Expr:
    program: Any | None
    error: str | None
    variables: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()


@lru_cache(maxsize=4096)
def _compile(text: str, declared: frozenset[str]) -> _Expr:
    """One expression compiled; cached by text, as rules repeat across CRDs and versions."""
    try:
        program = engine().compile(text)
    except ValueError as e:
        return _Expr(None, _parse_error(e))
    refs = program.references()
    err = _undeclared(text, refs, declared)
    if err:
        return _Expr(None, err)
    callback_names = frozenset(callbacks())
    return _Expr(
        program,
        None,
        frozenset(refs.get("variables", ())),
        frozenset(n for n in refs.get("functions", ()) if n in callback_names),
    )


_FIELD_AFTER = re.compile(r"\s*\.\s*([A-Za-z_]\w*)(?!\w)(?!\s*\()")


def selected_fields(text: str, var: str) -> frozenset[str] | None:
    """The fields `text` selects on `var` (`self.a`, `has(self.b)`), None if it uses `var` otherwise."""
    code = strip_strings(text)
    fields = set()
    for m in re.finditer(rf"(?<![\w.]){var}(?!\w)", code):
        after = _FIELD_AFTER.match(code, m.end())
        if after is None:
            return None
        fields.add(after.group(1))
    return frozenset(fields)


_RULE_VARS = frozenset({"self", "oldSelf"})


@lru_cache(maxsize=4096)
def _compile_rule(
    rule: str, message: str, message_expression: str, reason: str | None, field_path: str, optional_old_self: bool
) -> CompiledRule:
    program = error = message_program = message_error = None
    exprs: list[_Expr] = []
    sources: list[str] = []
    if not rule.strip():
        error = "rule is not specified"
    else:
        compiled = _compile(rule, _RULE_VARS)
        program, exprs, sources = compiled.program, [compiled], [rule]
        if compiled.error:
            error = f"compilation failed: {compiled.error}"
    if message_expression.strip() and error is None:
        compiled = _compile(message_expression, _RULE_VARS)
        message_program = compiled.program
        exprs.append(compiled)
        sources.append(message_expression)
        if compiled.error:
            message_error = f"messageExpression compilation failed: {compiled.error}"
    variables = frozenset().union(*(e.variables for e in exprs))
    self_fields: frozenset[str] | None = frozenset()
    old_fields: frozenset[str] | None = frozenset()
    for src in sources:
        found = selected_fields(src, "self")
        self_fields = None if found is None or self_fields is None else self_fields | found
        found = selected_fields(src, "oldSelf")
        old_fields = None if found is None or old_fields is None else old_fields | found
    return CompiledRule(
        rule=rule,
        message=message,
        message_expression=message_expression,
        reason=reason,
        field_path=field_path,
        optional_old_self=optional_old_self,
        program=program,
        message_program=message_program,
        error=error,
        message_error=message_error,
        uses_old_self=program is not None and "oldSelf" in exprs[0].variables,
        functions=frozenset().union(*(e.functions for e in exprs)),
        namespaces=variables & NAMESPACES,
        self_fields=self_fields,
        old_fields=old_fields,
    )


def compile_rule(rule: dict[str, Any], field_path: str = "") -> CompiledRule:
    """The compiled form of one `x-kubernetes-validations` entry (`field_path` already normalized)."""
    return _compile_rule(
        str(rule.get("rule") or ""),
        str(rule.get("message") or ""),
        str(rule.get("messageExpression") or ""),
        rule.get("reason"),
        field_path,
        bool(rule.get("optionalOldSelf")),
    )


def go_quote(text: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_rule(rule: dict[str, Any]) -> str:
    """`%#v` of the internal apiextensions.ValidationRule, as upstream prints it in CRD errors.

    Go prints a set pointer as its address; a fixed stand-in address is printed instead.
    """
    reason = (
        "(*apiextensions.FieldValueErrorReason)(nil)"
        if rule.get("reason") is None
        else "(*apiextensions.FieldValueErrorReason)(0xc000000000)"
    )
    old = "(*bool)(nil)" if rule.get("optionalOldSelf") is None else "(*bool)(0xc000000008)"
    return (
        f"apiextensions.ValidationRule{{Rule:{go_quote(str(rule.get('rule') or ''))}, "
        f"Message:{go_quote(str(rule.get('message') or ''))}, "
        f"MessageExpression:{go_quote(str(rule.get('messageExpression') or ''))}, "
        f"Reason:{reason}, FieldPath:{go_quote(str(rule.get('fieldPath') or ''))}, OptionalOldSelf:{old}}}"
    )
