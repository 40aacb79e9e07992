"""Label and field selectors: parsing, matching, canonical strings and upstream error texts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.errors import BadRequest
from timoner.api.selectors import (
    FieldRequirement,
    Operator,
    check_supported,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
)

# (selector, labels, matches)
MATCHES = [
    ("", {}, True),
    ("", {"a": "b"}, True),
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a=b", {}, False),
    ("a==b", {"a": "b"}, True),
    ("a!=b", {"a": "b"}, False),
    ("a!=b", {"a": "c"}, True),
    ("a!=b", {}, True),
    ("a in (x,y)", {"a": "y"}, True),
    ("a in (x,y)", {"a": "z"}, False),
    ("a in (x,y)", {}, False),
    ("a notin (x)", {"a": "x"}, False),
    ("a notin (x)", {"a": "y"}, True),
    ("a notin (x)", {}, True),
    ("a", {"a": ""}, True),
    ("a", {"b": "c"}, False),
    ("!a", {"b": "c"}, True),
    ("!a", {"a": "c"}, False),
    ("a=b,c=d", {"a": "b", "c": "d"}, True),
    ("a=b,c=d", {"a": "b"}, False),
    ("  a = b ,  c  ", {"a": "b", "c": "x"}, True),
    ("a=", {"a": ""}, True),
    ("a>5", {"a": "6"}, True),
    ("a>5", {"a": "5"}, False),
    ("a<5", {"a": "-1"}, True),
    ("a>5", {"a": "x"}, False),
    ("in in (in)", {"in": "in"}, True),
    ("x in (foo,,baz)", {"x": ""}, True),
    ("app.kubernetes.io/name=web", {"app.kubernetes.io/name": "web"}, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHES)
def test_label_selector_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_none_labels_are_empty() -> None:
    assert parse_label_selector("!a").matches(None)
    assert not parse_label_selector("a").matches(None)


CANONICAL = [
    ("", ""),
    ("b=1,a=2", "a=2,b=1"),
    ("a == b", "a==b"),
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("a in (c,b,b)", "a in (b,c)"),
    ("!a", "!a"),
    ("a>5", "a>5"),
    ("a notin (x,y),  b", "a notin (x,y),b"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_label_selector_string(text: str, canonical: str) -> None:
    assert str(parse_label_selector(text)) == canonical


ERRORS = [
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a=b,", "found '', expected: identifier after ','"),
    ("=b", "found '=', expected: !, identifier, or 'end of string'"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    (
        "-a=b",
        'unable to parse requirement: <nil>: Invalid value: "-a": name part must consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  "
        "or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ),
    (
        "a=-b",
        'unable to parse requirement: values[0][a]: Invalid value: "-b": a valid label must be an empty string',
    ),
    ("a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators"),
    ("Example.com/a=b", 'unable to parse requirement: <nil>: Invalid value: "Example.com/a": prefix part'),
    (
        "a=" + "x" * 64,
        f'unable to parse requirement: values[0][a]: Invalid value: "{"x" * 64}": must be no more than 63 characters',
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_label_selector_errors(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_label_selector(text)
    assert info.value.code == 400
    assert info.value.message.startswith(message)


def test_requirements_are_sorted_and_typed() -> None:
    sel = parse_label_selector("z=1,a in (y,x),!m")
    assert [(r.key, r.operator, r.values) for r in sel.requirements] == [
        ("a", Operator.IN, ("x", "y")),
        ("m", Operator.DOES_NOT_EXIST, ()),
        ("z", Operator.EQUALS, ("1",)),
    ]
    assert sel.requires_exact_match("z") == "1"
    assert sel.requires_exact_match("a") is None
    assert sel.requires_exact_match("q") is None


# (metav1.LabelSelector, labels, matches, canonical string)
FROM_DICT = [
    (None, {"a": "b"}, False, ""),
    ({}, {"a": "b"}, True, ""),
    ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True, "app=web"),
    ({"matchLabels": {"app": "web"}}, {"app": "db"}, False, "app=web"),
    (
        {
            "matchLabels": {"b": "1"},
            "matchExpressions": [{"key": "a", "operator": "In", "values": ["y", "x"]}],
        },
        {"a": "x", "b": "1"},
        True,
        "a in (x,y),b=1",
    ),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {}, True, "a notin (x)"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True, "a"),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False, "!a"),
]


@pytest.mark.parametrize(("sel", "labels", "expected", "text"), FROM_DICT)
def test_label_selector_from_dict(
    sel: dict | None, labels: dict[str, str], expected: bool, text: str
) -> None:
    selector = label_selector_from_dict(sel)
    assert selector.matches(labels) is expected
    assert str(selector) == text
    assert selector.empty is (sel == {})


DICT_ERRORS = [
    ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}, '"Equals" is not a valid'),
    (
        {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
    ),
    (
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist',
    ),
    ({"matchLabels": {"a b": "c"}}, 'key: Invalid value: "a b": name part must consist'),
]


@pytest.mark.parametrize(("sel", "message"), DICT_ERRORS)
def test_label_selector_from_dict_errors(sel: dict, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        label_selector_from_dict(sel)
    assert info.value.message.startswith(message)


keys = st.from_regex(
    r"([a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z0-9]{1,4})?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?",
    fullmatch=True,
)
values = st.from_regex(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,6}[A-Za-z0-9])?)?", fullmatch=True)
requirement_texts = st.one_of(
    st.builds(lambda k, op, v: f"{k}{op}{v}", keys, st.sampled_from(["=", "==", "!="]), values),
    st.builds(
        lambda k, op, vs: f"{k} {op} ({','.join(vs)})",
        keys,
        st.sampled_from(["in", "notin"]),
        st.lists(values, min_size=1, max_size=4),
    ),
    st.builds(lambda k, neg: ("!" if neg else "") + k, keys, st.booleans()),
)


@given(st.lists(requirement_texts, max_size=5))
def test_label_selector_string_round_trip(parts: list[str]) -> None:
    selector = parse_label_selector(",".join(parts))
    again = parse_label_selector(str(selector))
    assert again == selector
    assert str(again) == str(selector)


@given(
    st.lists(requirement_texts, max_size=4),
    st.dictionaries(keys, values, max_size=4),
)
def test_round_trip_preserves_matching(parts: list[str], labels: dict[str, str]) -> None:
    selector = parse_label_selector(",".join(parts))
    assert parse_label_selector(str(selector)).matches(labels) == selector.matches(labels)


# ------------------------------------------------------------------ field selectors

FIELD_PARSE = [
    ("", ()),
    ("metadata.name=a", (FieldRequirement("metadata.name", "=", "a"),)),
    ("metadata.name==a", (FieldRequirement("metadata.name", "=", "a"),)),
    (
        "status.phase!=Running,spec.nodeName=n1",
        (FieldRequirement("spec.nodeName", "=", "n1"), FieldRequirement("status.phase", "!=", "Running")),
    ),
    ("spec.nodeName=", (FieldRequirement("spec.nodeName", "=", ""),)),
    ("a=x\\,y\\=z\\\\", (FieldRequirement("a", "=", "x,y=z\\"),)),
    ("a=b,,c=d", (FieldRequirement("a", "=", "b"), FieldRequirement("c", "=", "d"))),
]


@pytest.mark.parametrize(("text", "requirements"), FIELD_PARSE)
def test_field_selector_parse(text: str, requirements: tuple[FieldRequirement, ...]) -> None:
    selector = parse_field_selector(text)
    assert selector.requirements == requirements
    assert parse_field_selector(str(selector)) == selector


FIELD_ERRORS = [
    ("a", "invalid selector: 'a'; can't understand 'a'"),
    ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
    ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    ("a=b\\x", "invalid field selector: invalid escape sequence: \\x"),
    ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
]


@pytest.mark.parametrize(("text", "message"), FIELD_ERRORS)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_field_selector(text)
    assert info.value.message == message


FIELD_MATCHES = [
    ("", {"metadata.name": "a"}, True),
    ("metadata.name=a", {"metadata.name": "a"}, True),
    ("metadata.name=a", {"metadata.name": "b"}, False),
    ("spec.nodeName=", {}, True),
    ("spec.nodeName!=", {"spec.nodeName": "n1"}, True),
    ("spec.nodeName!=", {}, False),
    ("metadata.name=a,metadata.namespace=ns", {"metadata.name": "a", "metadata.namespace": "ns"}, True),
    ("metadata.name=a,metadata.namespace=ns", {"metadata.name": "a", "metadata.namespace": "x"}, False),
]


@pytest.mark.parametrize(("text", "fields", "expected"), FIELD_MATCHES)
def test_field_selector_matches(text: str, fields: dict[str, str], expected: bool) -> None:
    assert parse_field_selector(text).matches(fields) is expected


def test_field_selector_introspection() -> None:
    selector = parse_field_selector("metadata.name=web,status.phase!=Failed")
    assert selector.fields == frozenset({"metadata.name", "status.phase"})
    assert selector.exact_value("metadata.name") == "web"
    assert selector.exact_value("status.phase") is None
    assert selector.exact_value("spec.nodeName") is None
    assert parse_field_selector("").empty and not selector.empty


def test_check_supported() -> None:
    selector = parse_field_selector("metadata.name=a,spec.foo=b")
    check_supported(parse_field_selector("metadata.name=a"), {"metadata.name"}, resource="pods")
    with pytest.raises(BadRequest) as info:
        check_supported(selector, {"metadata.name", "metadata.namespace"}, resource="pods")
    assert info.value.message == "field label not supported: spec.foo"
    with pytest.raises(BadRequest) as info:
        check_supported(selector, {"metadata.name"}, resource="deployments.apps", registered=False)
    assert (
        info.value.message
        == '"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


field_values = st.text(alphabet="ab,=\\ .-", max_size=6)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b.c", "d"]), st.sampled_from(["=", "!="]), field_values), max_size=4
    )
)
def test_field_selector_string_round_trip(terms: list[tuple[str, str, str]]) -> None:
    from timoner.api.selectors import FieldSelector

    selector = FieldSelector(tuple(FieldRequirement(f, op, v) for f, op, v in terms))
    reparsed = parse_field_selector(str(selector))
    assert sorted(reparsed.requirements, key=str) == sorted(selector.requirements, key=str)
