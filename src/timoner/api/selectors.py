"""Label and field selectors: parsing, matching and the canonical string forms.

Label selectors follow k8s.io/apimachinery/pkg/labels: a small lexer and a
recursive-descent parser over `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
`a notin (x)`, `a`, `!a`, `a>1`, `a<1`, joined by commas (AND). Requirements
are kept sorted by key, and values of parsed requirements sorted and unique,
because upstream does so and `str()` must reproduce its canonical form (it
travels in `Scale.status.selector`). Parse errors raise `BadRequest` with
upstream's text, `unable to parse requirement: ...`, since that is what the
API server answers for a bad `labelSelector` query parameter.

`label_selector_from_dict` converts a `metav1.LabelSelector`: None selects
nothing, `{}` selects everything.

Field selectors follow k8s.io/apimachinery/pkg/fields: terms `k=v`, `k==v`,
`k!=v` split on unescaped commas; values may escape `\\`, `,` and `=` with a
backslash. A missing field compares as the empty string.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from timoner.api.errors import BadRequest

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Operator",
    "Requirement",
    "check_supported",
    "label_key_errors",
    "label_selector_from_dict",
    "label_value_errors",
    "parse_field_selector",
    "parse_label_selector",
]


class Operator(enum.StrEnum):
    """A label requirement operator, spelled as upstream's `selection.Operator`."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_SET_OPERATORS = (Operator.IN, Operator.NOT_IN)
_EXACT_OPERATORS = (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS)
_NUMERIC_OPERATORS = (Operator.GREATER_THAN, Operator.LESS_THAN)
_BINARY_OPERATOR_NAMES = "in, notin, =, ==, !=, gt, lt"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement: a key, an operator and its values."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        if self.key not in labels:
            # A missing label satisfies only the negative operators.
            return op in (Operator.NOT_IN, Operator.NOT_EQUALS)
        value = labels[self.key]
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return value in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return value not in self.values
        have, want = _int64(value), _int64(self.values[0]) if len(self.values) == 1 else None
        if have is None or want is None:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in _SET_OPERATORS:
            return f"{self.key} {op.value} ({values})"
        spelled = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{spelled}{values}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """An AND of label requirements; `nothing` marks the selector that matches no object."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (it matches every object)."""
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value `key` must have, or None (upstream's RequiresExactMatch)."""
        for r in self.requirements:
            if r.key == key:
                exact = r.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
                return r.values[0] if exact and len(r.values) == 1 else None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# --------------------------------------------------------------------- validation

_QNAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(f"^{_QNAME}$")
_LABEL_VALUE_RE = re.compile(f"^({_QNAME})?$")
_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN}$")
_QNAME_MSG = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Upstream's RegexError, double space before "or" included.
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    listed = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {listed}regex used for validation is '{fmt}')"


def label_key_errors(key: str) -> list[str]:
    """Upstream's IsQualifiedName messages for a label key (empty when valid)."""
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN_RE.match(prefix):
                errs.append(
                    "prefix part "
                    + _regex_error(
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                        "'-' or '.', and must start and end with an alphanumeric character",
                        _DNS1123_SUBDOMAIN,
                        "example.com",
                    )
                )
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QNAME_RE.match(name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """Upstream's IsValidLabelValue messages (empty when valid)."""
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character",
                f"({_QNAME})?",
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errs


def _go_quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _go_strings(values: Iterable[str]) -> str:
    items = list(values)
    if not items:
        return "[]string(nil)"
    return "[]string{" + ", ".join(_go_quote(v) for v in items) + "}"


def _invalid(path: str, shown: str, detail: str) -> str:
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(errors: list[str]) -> str:
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _int64(text: str) -> int | None:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    number = int(text)
    return number if -(1 << 63) <= number < (1 << 63) else None


def _count_error(op: Operator, values: tuple[str, ...]) -> str | None:
    """Upstream's complaint about the number of values an operator got, if any."""
    if op in _SET_OPERATORS and not values:
        return "for 'in', 'notin' operators, values set can't be empty"
    if op in _EXACT_OPERATORS and len(values) != 1:
        return "exact-match compatibility requires one single value"
    if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
        return "values set must be empty for exists and does not exist"
    if op in _NUMERIC_OPERATORS and len(values) != 1:
        return "for 'Gt', 'Lt' operators, exactly one value is required"
    return None


def _new_requirement(key: str, op: Operator, values: tuple[str, ...]) -> Requirement:
    """Validate like upstream's NewRequirement; the message lists every problem found."""
    errors: list[str] = []
    if key_errs := label_key_errors(key):
        errors.append(_invalid("key", _go_quote(key), "; ".join(key_errs)))
    if count_error := _count_error(op, values):
        errors.append(_invalid("values", _go_strings(values), count_error))
    if op in _NUMERIC_OPERATORS:
        integer_error = "for 'Gt', 'Lt' operators, the value must be an integer"
        errors += [
            _invalid(f"values[{i}]", _go_quote(v), integer_error)
            for i, v in enumerate(values)
            if _int64(v) is None
        ]
    for i, v in enumerate(values):
        if value_errs := label_value_errors(v):
            errors.append(_invalid(f"values[{i}][{key}]", _go_quote(v), "; ".join(value_errs)))
    if errors:
        raise _RequirementError(_aggregate(errors))
    return Requirement(key, op, values)


class _RequirementError(ValueError):
    """A requirement failed validation; callers wrap the text in their own prefix."""


# --------------------------------------------------------------------- lexer and parser

_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_SYMBOLS = {")", ",", "!", "==", "=", ">", "<", "!=", "("}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "id", "end", or the literal of an operator/keyword
    text: str


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= end:
            tokens.append(_Token("end", ""))
            return tokens
        if text[pos] in _SPECIAL:
            # Longest run of special characters that is still a known symbol.
            best, length = "", 0
            while pos + length < end and text[pos + length] in _SPECIAL:
                candidate = text[pos : pos + length + 1]
                if candidate in _SYMBOLS:
                    best = candidate
                elif best:
                    break
                length += 1
            pos += len(best)
            tokens.append(_Token(best, best))
            continue
        start = pos
        while pos < end and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        tokens.append(_Token(word if word in ("in", "notin") else "id", word))


class _Parser:
    """Upstream's recursive-descent label selector parser, token for token."""

    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def _peek(self, values: bool = True) -> _Token:
        return self._as_value(self.tokens[self.pos], values)

    def _next(self, values: bool = True) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return self._as_value(token, values)

    @staticmethod
    def _as_value(token: _Token, values: bool) -> _Token:
        # `in` and `notin` are ordinary identifiers wherever a key or value is expected.
        return _Token("id", token.text) if values and token.kind in ("in", "notin") else token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token = self._peek()
            if token.kind == "end":
                return requirements
            if token.kind not in ("id", "!"):
                raise ValueError(f"found '{token.text}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except ValueError as exc:
                raise ValueError(f"unable to parse requirement: {exc}") from None
            after = self._next()
            if after.kind == "end":
                return requirements
            if after.kind != ",":
                raise ValueError(f"found '{after.text}', expected: ',' or 'end of string'")
            following = self._peek()
            if following.kind not in ("id", "!"):
                raise ValueError(f"found '{following.text}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        negated = False
        token = self._next()
        if token.kind == "!":
            negated = True
            token = self._next()
        if token.kind != "id":
            raise ValueError(f"found '{token.text}', expected: identifier")
        key = token.text
        if errs := label_key_errors(key):
            raise ValueError(_invalid("<nil>", _go_quote(key), "; ".join(errs)))
        if self._peek().kind in ("end", ","):
            return _new_requirement(key, Operator.DOES_NOT_EXIST if negated else Operator.EXISTS, ())
        if negated:
            return _new_requirement(key, Operator.DOES_NOT_EXIST, ())
        op = self._operator()
        values = self._set_values() if op in _SET_OPERATORS else self._exact_value()
        return _new_requirement(key, op, tuple(sorted(values)))

    def _operator(self) -> Operator:
        token = self._next(values=False)
        ops = {
            "in": Operator.IN,
            "notin": Operator.NOT_IN,
            "=": Operator.EQUALS,
            "==": Operator.DOUBLE_EQUALS,
            "!=": Operator.NOT_EQUALS,
            ">": Operator.GREATER_THAN,
            "<": Operator.LESS_THAN,
        }
        if token.kind not in ops:
            raise ValueError(f"found '{token.text}', expected: {_BINARY_OPERATOR_NAMES}")
        return ops[token.kind]

    def _set_values(self) -> set[str]:
        token = self._next()
        if token.kind != "(":
            raise ValueError(f"found '{token.text}' expected: '('")
        token = self._peek()
        if token.kind == ")":
            self._next()
            return {""}
        if token.kind not in ("id", ","):
            raise ValueError(f"found '{token.text}', expected: ',', ')' or identifier")
        values = self._identifiers()
        if self._next().kind != ")":
            raise ValueError(f"found '{token.text}', expected: ')'")
        return values

    def _identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            token = self._next()
            if token.kind == "id":
                values.add(token.text)
                following = self._peek()
                if following.kind == ",":
                    continue
                if following.kind == ")":
                    return values
                raise ValueError(f"found '{following.text}', expected: ',' or ')'")
            if token.kind == ",":
                # Empty strings between commas are values too: "(,a)" and "(a,,b)".
                if not values:
                    values.add("")
                following = self._peek()
                if following.kind in (")", ","):
                    values.add("")
                if following.kind == ")":
                    return values
                continue
            raise ValueError(f"found '{token.text}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._peek().kind in ("end", ","):
            return {""}
        token = self._next()
        if token.kind == "id":
            return {token.text}
        raise ValueError(f"found '{token.text}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the string syntax (`app=web,tier in (a,b),!canary`); the empty string selects everything."""
    try:
        requirements = _Parser(text).parse()
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


def label_selector_from_dict(sel: Mapping[str, object] | None) -> LabelSelector:
    """Convert a `metav1.LabelSelector`: None matches nothing, `{}` matches everything."""
    if sel is None:
        return LabelSelector(nothing=True)
    if not isinstance(sel, Mapping):
        raise BadRequest(f"label selector must be an object, not {type(sel).__name__}")
    match_labels = sel.get("matchLabels") or {}
    expressions = sel.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
        raise BadRequest("matchLabels must be an object and matchExpressions a list")
    requirements: list[Requirement] = []
    ops = {
        "In": Operator.IN,
        "NotIn": Operator.NOT_IN,
        "Exists": Operator.EXISTS,
        "DoesNotExist": Operator.DOES_NOT_EXIST,
    }
    try:
        for key, value in match_labels.items():
            requirements.append(_new_requirement(str(key), Operator.EQUALS, (str(value),)))
        for expr in expressions:
            if not isinstance(expr, Mapping):
                raise _RequirementError("matchExpressions entries must be objects")
            op_name = expr.get("operator")
            if op_name not in ops:
                raise _RequirementError(
                    f"{_go_quote(str(op_name or ''))} is not a valid label selector operator"
                )
            values = tuple(str(v) for v in expr.get("values") or ())
            requirements.append(_new_requirement(str(expr.get("key", "")), ops[op_name], values))
    except _RequirementError as exc:
        raise BadRequest(str(exc)) from None
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


# --------------------------------------------------------------------- field selectors


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One field selector term; `op` is `=` (also written `==`) or `!=`."""

    field: str
    op: str
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.field, "") == self.value
        return equal if self.op == "=" else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.op}{_escape_field_value(self.value)}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """An AND of field terms, in upstream's order (sorted by term text)."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(r.field for r in self.requirements)

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def exact_value(self, field: str) -> str | None:
        """The value an `=` term pins `field` to, for `metadata.name=x` fast paths."""
        for r in self.requirements:
            if r.field == field and r.op == "=":
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    start, escaped = 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    # The first operator occurrence splits; `!=` and `==` win over `=` at the same spot.
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def _unescape_field_value(value: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise BadRequest(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            # Upstream formats the rune with %v, which prints its code point.
            raise BadRequest(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise BadRequest("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def parse_field_selector(text: str) -> FieldSelector:
    """Parse `k=v,k!=v` (upstream fields.ParseSelector); the empty string selects everything."""
    requirements: list[FieldRequirement] = []
    for term in sorted(_split_terms(text)) if text else ():
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, raw = split
        requirements.append(FieldRequirement(field, "!=" if op == "!=" else "=", _unescape_field_value(raw)))
    return FieldSelector(tuple(requirements))


def check_supported(
    selector: FieldSelector,
    supported: Collection[str],
    *,
    resource: str,
    registered: bool = True,
) -> None:
    """Raise BadRequest for the first field the resource cannot select on.

    Kinds with their own field-label conversion (core kinds such as pods,
    events, secrets, and every custom resource) answer `field label not
    supported: X`; kinds without one (`registered=False`, e.g. apps/v1)
    answer upstream's default-conversion message. `resource` names the
    resource being listed; neither upstream message mentions it.
    """
    del resource  # part of the stable signature; upstream's messages do not name it
    for r in selector.requirements:
        if r.field in supported:
            continue
        if registered:
            raise BadRequest(f"field label not supported: {r.field}")
        raise BadRequest(
            f'{_go_quote(r.field)} is not a known field selector: only "metadata.name", "metadata.namespace"'
        )
