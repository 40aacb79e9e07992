"""CEL validation rules of custom resources: what upstream reports, when, and where."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.crd._cel_compile import compile_rule
from timoner.api.crd.cel import compile_causes, escape_property, validate_rules
from timoner.api.errors import Cause

ROOT = "spec.versions[0].schema.openAPIV3Schema"


def crd_schema(spec: dict) -> dict:
    """An openAPIV3Schema as CRDs declare it: apiVersion, kind, metadata, and `spec`."""
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }


def obj(spec: dict, name: str = "demo") -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "labels": {"a": "b"}},
            "spec": spec}


AUTOSCALER = crd_schema({
    "type": "object",
    "x-kubernetes-validations": [
        {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"},
    ],
    "properties": {
        "minReplicas": {"type": "integer"},
        "maxReplicas": {"type": "integer"},
        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]},
        "containers": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "image": {"type": "string"}},
                "x-kubernetes-validations": [
                    {"rule": "self.image.matches('^[a-z0-9./:-]+$')", "messageExpression": "'bad image: ' + self.image"},
                    {"rule": "self.image == oldSelf.image", "message": "image is immutable", "fieldPath": ".image"},
                ],
            },
        },
    },
})


def test_a_rule_on_an_object_fails_with_its_message_at_the_objects_path():
    causes = validate_rules(AUTOSCALER, obj({"minReplicas": 5, "maxReplicas": 2}), None)
    assert causes == [
        Cause("FieldValueInvalid", 'Invalid value: "object": minReplicas must not exceed maxReplicas', "spec")
    ]
    assert validate_rules(AUTOSCALER, obj({"minReplicas": 2, "maxReplicas": 2}), None) == []


def test_a_rule_on_a_list_item_reports_the_items_index_and_its_message_expression():
    spec = {"minReplicas": 1, "maxReplicas": 2,
            "containers": [{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "Bad Image"}]}
    assert validate_rules(AUTOSCALER, obj(spec), None) == [
        Cause("FieldValueInvalid", 'Invalid value: "object": bad image: Bad Image', "spec.containers[1]")
    ]


def test_a_transition_rule_is_skipped_on_create_and_holds_on_update():
    new = obj({"minReplicas": 1, "maxReplicas": 2, "name": "renamed"})
    assert validate_rules(AUTOSCALER, new, None) == []
    old = obj({"minReplicas": 1, "maxReplicas": 2, "name": "original"})
    assert validate_rules(AUTOSCALER, new, old) == [
        Cause("FieldValueInvalid", 'Invalid value: "string": Value is immutable', "spec.name")
    ]
    assert validate_rules(AUTOSCALER, old, copy.deepcopy(old)) == []


def test_list_map_items_correlate_by_key_whatever_their_position():
    bounds = {"minReplicas": 1, "maxReplicas": 1}
    old = obj({**bounds, "containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]})
    reordered = obj({**bounds, "containers": [{"name": "b", "image": "y:1"}, {"name": "a", "image": "x:1"}]})
    assert validate_rules(AUTOSCALER, reordered, old) == []
    changed = obj({**bounds, "containers": [{"name": "c", "image": "z:1"}, {"name": "a", "image": "x:2"}]})
    # "c" is new (no oldSelf: skipped); "a" changed image, reported at its new index plus fieldPath.
    assert validate_rules(AUTOSCALER, changed, old) == [
        Cause("FieldValueInvalid", 'Invalid value: "object": image is immutable', "spec.containers[1].image")
    ]


def test_set_and_atomic_list_items_do_not_correlate():
    schema = crd_schema({"type": "object", "properties": {"tags": {
        "type": "array", "x-kubernetes-list-type": "set",
        "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 5"}]},
    }}})
    causes = validate_rules(schema, obj({"tags": ["ok", "toolong"]}), obj({"tags": ["x"]}))
    assert causes == [Cause("FieldValueInvalid", 'Invalid value: "string": failed rule: self.size() < 5', "spec.tags[1]")]


@pytest.mark.parametrize(
    ("rule", "cause"),
    [
        ({"reason": "FieldValueForbidden", "message": "no replicas here"},
         Cause("FieldValueForbidden", "Forbidden: no replicas here", "spec")),
        ({"reason": "FieldValueRequired", "message": "replicas needed"},
         Cause("FieldValueRequired", "Required value: replicas needed", "spec")),
        ({"reason": "FieldValueDuplicate"}, Cause("FieldValueDuplicate", 'Duplicate value: "object"', "spec")),
        ({"reason": "FieldValueInvalid", "fieldPath": ".replicas"},
         Cause("FieldValueInvalid", 'Invalid value: "object": failed rule: self.replicas < 10', "spec.replicas")),
        ({"messageExpression": "'replicas is ' + string(self.replicas) + ', at most 9'", "message": "too many"},
         Cause("FieldValueInvalid", 'Invalid value: "object": replicas is 12, at most 9', "spec")),
        # A messageExpression that fails at runtime falls back to the message, then to the rule.
        ({"messageExpression": "'x' + self.missing", "message": "too many"},
         Cause("FieldValueInvalid", 'Invalid value: "object": too many', "spec")),
        ({"messageExpression": "string(self.replicas)", "fieldPath": ".replicas", "reason": "FieldValueForbidden"},
         Cause("FieldValueForbidden", "Forbidden: 12", "spec.replicas")),
    ],
)
def test_reason_field_path_and_message_shape_the_cause(rule, cause):
    schema = crd_schema({
        "type": "object",
        "properties": {"replicas": {"type": "integer"}, "missing": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self.replicas < 10", **rule}],
    })
    assert compile_causes(schema, ROOT) == []
    assert validate_rules(schema, obj({"replicas": 12}), None) == [cause]


@pytest.mark.parametrize(
    ("rule", "value", "detail"),
    [
        ("self.replicas > 0", {}, "no such key: replicas evaluating rule: self.replicas > 0"),
        ("self.port + 1 > 0", {"port": "http"},
         "'no such overload': call arguments did not match a supported operator, function or macro signature "
         "for rule: self.port + 1 > 0"),
        ("10 / self.replicas > 1", {"replicas": 0}, "division by zero evaluating rule: 10 / self.replicas > 1"),
        ("self.items[3] == 'x'", {"items": ["a"]}, "index out of bounds: 3 evaluating rule: self.items[3] == 'x'"),
        ("self.replicas", {"replicas": 1}, "rule compile error: cel expression must evaluate to a bool"),
        ("self.port.substring(5) == ''", {"port": "http"}, "index out of range: 5 evaluating rule: self.port.substring(5) == ''"),
    ],
)
def test_a_rule_that_errors_at_runtime_is_an_invalid_value(rule, value, detail):
    schema = crd_schema({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {"replicas": {"type": "integer"}, "port": {"x-kubernetes-int-or-string": True},
                       "items": {"type": "array", "items": {"type": "string"}}},
        "x-kubernetes-validations": [{"rule": rule}],
    })
    assert validate_rules(schema, obj(value), None) == [Cause("FieldValueInvalid", f'Invalid value: "object": {detail}', "spec")]


LIBRARY_RULES = [
    "self.tags.isSorted() && ![3, 1].isSorted() && ['a', 'b'].isSorted()",
    "self.weights.sum() == 8 && self.weights.min() == 1 && self.weights.max() == 3",
    "self.weights.indexOf(2) == 1 && self.weights.lastIndexOf(2) == 3 && self.weights.indexOf(9) == -1",
    "self.name.find('[0-9]+') == '42' && self.name.findAll('[a-z]') == ['w', 'e', 'b'] && self.name.findAll('.', 2).size() == 2",
    "self.name.matches('^web-[0-9]+$') && self.name.startsWith('web') && self.name.endsWith('42')",
    "self.name.contains('-') && size(self.name) == 6 && self.name.size() == 6 && size(self.tags) == 2",
    "'Hello'.charAt(1) == 'e' && 'Hello'.indexOf('l') == 2 && 'Hello'.lastIndexOf('l') == 3",
    "'HeLLo'.lowerAscii() == 'hello' && 'ab'.upperAscii() == 'AB' && 'aXa'.replace('X', 'y') == 'aya'",
    "'a,b,c'.split(',') == ['a', 'b', 'c'] && 'hello'.substring(1, 3) == 'el' && '  x '.trim() == 'x'",
    "['a', 'b'].join('-') == 'a-b' && '%s has %d, %.1f'.format(['x', 3, 0.25]) == 'x has 3, 0.2'",
    "has(self.name) && !has(self.nickname)",
    "self.weights.all(w, w > 0) && self.weights.exists(w, w == 3) && self.weights.exists_one(w, w == 3)",
    "self.weights.map(w, w * 2) == [2, 4, 6, 4] && self.weights.filter(w, w > 2) == [3]",
    "self.ratio / 2.0 == 0.5 && self.ratio == 1.0",
    "timestamp(self.since) < timestamp('2030-01-01T00:00:00Z') && self.since.getFullYear() == 2024",
    "self.since + self.period < timestamp('2024-05-01T12:00:00Z') && self.period > duration('30m')",
    "self.day < self.since && self.blob == b'hello' && size(self.blob) == 5",
    "url(self.endpoint).getScheme() == 'https' && url(self.endpoint).getHost() == 'example.com:8443'",
    "url(self.endpoint).getHostname() == 'example.com' && url(self.endpoint).getPort() == '8443'",
    "url(self.endpoint).getEscapedPath() == '/api' && url(self.endpoint).getQuery()['x'] == ['1']",
    "isURL(self.endpoint) && !isURL('not a url')",
    "quantity(self.memory).isLessThan(quantity('2Gi')) && quantity(self.memory) == quantity('1024Mi')",
    "quantity('500m').compareTo(quantity('1')) == -1 && quantity('1').add(quantity('500m')) == quantity('1500m')",
    "quantity('1k').asInteger() == 1000 && isQuantity(self.memory) && !isQuantity('lots')",
    "self.x__dash__y == 'escaped' && self.__namespace__ == 'kw'",
    "'a,b,c'.split(',', 2) == ['a', 'b,c'] && 'abc'.split('') == ['a', 'b', 'c'] && 'aaa'.replace('a', 'b', 2) == 'bba'",
    "'héllo'.charAt(1) == 'é' && 'héllo'.substring(1) == 'éllo' && 'abc'.reverse() == 'cba' && [1, 2].reverse() == [2, 1]",
    "sets.contains(self.tags, ['a']) && sets.equivalent(['a', 'b'], self.tags) && !sets.intersects(self.tags, ['z'])",
    "[[1], [2, [3]]].flatten() == [1, 2, [3]] && [3, 1, 2].sort() == [1, 2, 3] && [1, 1, 2].distinct() == [1, 2]",
    "lists.range(3) == [0, 1, 2] && [1, 2, 3].slice(1, 3) == [2, 3] && strings.quote('a\"b') == '\"a\\\\\"b\"'",
    "base64.encode(b'hi') == 'aGk=' && base64.decode('aGk=') == b'hi' && self.tags.join() == 'ab'",
    "self.labels.all(k, k.startsWith('app')) && self.labels['app'] == 'web'",
]


@pytest.mark.parametrize("rule", LIBRARY_RULES)
def test_library_functions_behave_as_in_kubernetes(rule):
    schema = crd_schema({
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "nickname": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "weights": {"type": "array", "items": {"type": "integer"}},
            "ratio": {"type": "number"}, "since": {"type": "string", "format": "date-time"},
            "period": {"type": "string", "format": "duration"}, "day": {"type": "string", "format": "date"},
            "blob": {"type": "string", "format": "byte"},
            "endpoint": {"type": "string"}, "memory": {"type": "string"},
            "x-y": {"type": "string"}, "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "x-kubernetes-validations": [{"rule": rule}],
    })
    assert compile_causes(schema, ROOT) == []
    spec = {"name": "web-42", "tags": ["a", "b"], "weights": [1, 2, 3, 2], "ratio": 1,
            "since": "2024-05-01T10:00:00Z", "period": "1h30m", "day": "2024-04-30", "blob": "aGVsbG8=", "endpoint": "https://example.com:8443/api?x=1", "memory": "1Gi",
            "x-y": "escaped", "namespace": "kw", "labels": {"app": "web", "app.kubernetes.io/part-of": "x"}}
    assert validate_rules(schema, obj(spec), None) == []
    if "self" in rule:
        # The same rule must be able to fail: break every input it reads.
        broken = {"name": "x", "nickname": "y", "tags": ["z", "a"], "weights": [5], "ratio": 3,
                  "since": "2031-01-01T00:00:00Z", "period": "10m", "day": "2032-01-01", "blob": "eA==",
                  "endpoint": "::bad", "memory": "lots", "x-y": "no",
                  "namespace": "no", "labels": {"zz": "q"}}
        assert validate_rules(schema, obj(broken), None) != []


def test_the_resource_root_sees_type_meta_and_only_name_of_metadata():
    schema = crd_schema({"type": "object"})
    schema["x-kubernetes-validations"] = [
        {"rule": "self.metadata.name.startsWith('demo') && self.kind == 'Widget'", "message": "bad name"},
        {"rule": "!has(self.metadata.generateName)"},
    ]
    assert compile_causes(schema, ROOT) == []
    assert validate_rules(schema, obj({}, name="demo-1"), None) == []
    # Root errors have no field path: upstream prints a nil *field.Path as "<nil>".
    assert validate_rules(schema, obj({}, name="other"), None) == [
        Cause("FieldValueInvalid", 'Invalid value: "object": bad name', "<nil>")
    ]
    schema["x-kubernetes-validations"] = [{"rule": "self.metadata.labels.size() > 0"}]
    [cause] = compile_causes(schema, ROOT)
    assert cause.message.endswith("compilation failed: ERROR: <input>:1:14: undefined field 'labels'\n"
                                  " | self.metadata.labels.size() > 0\n | .............^")


def test_embedded_resources_expose_their_type_meta():
    schema = crd_schema({"type": "object", "properties": {"template": {
        "type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-validations": [{"rule": "self.kind == 'Pod' && self.metadata.name != ''"}],
    }}})
    assert compile_causes(schema, ROOT) == []
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"}}
    assert validate_rules(schema, obj({"template": pod}), None) == []
    assert len(validate_rules(schema, obj({"template": {**pod, "kind": "Job"}}), None)) == 1


def test_ratcheting_keeps_an_unchanged_invalid_value_but_not_a_changed_one():
    spec = {"minReplicas": 5, "maxReplicas": 2}
    assert validate_rules(AUTOSCALER, obj(spec), obj(dict(spec))) == []
    assert len(validate_rules(AUTOSCALER, obj({**spec, "minReplicas": 6}), obj(spec))) == 1


def test_optional_old_self_runs_on_create_with_an_empty_optional():
    schema = crd_schema({"type": "object", "properties": {"replicas": {"type": "integer"}},
                         "x-kubernetes-validations": [{
                             "rule": "oldSelf.hasValue() ? self.replicas >= oldSelf.value().replicas : self.replicas < 3",
                             "optionalOldSelf": True, "message": "cannot shrink"}]})
    assert compile_causes(schema, ROOT) == []
    assert validate_rules(schema, obj({"replicas": 1}), None) == []
    assert len(validate_rules(schema, obj({"replicas": 4}), None)) == 1
    assert validate_rules(schema, obj({"replicas": 5}), obj({"replicas": 4})) == []
    assert validate_rules(schema, obj({"replicas": 3}), obj({"replicas": 4})) == [
        Cause("FieldValueInvalid", 'Invalid value: "object": cannot shrink', "spec")
    ]


def test_null_and_absent_values_are_not_validated():
    schema = crd_schema({"type": "object", "properties": {"a": {
        "type": "string", "nullable": True, "x-kubernetes-validations": [{"rule": "self.size() > 3"}]}}})
    assert validate_rules(schema, obj({"a": None}), None) == []
    assert validate_rules(schema, obj({}), None) == []


# --- CRD time ---------------------------------------------------------------------------------------


def test_a_rule_that_does_not_compile_is_reported_as_upstream_prints_it():
    schema = crd_schema({"type": "object", "properties": {"a": {"type": "integer"}},
                         "x-kubernetes-validations": [{"rule": "self.a <= ", "message": "a is small"}]})
    assert compile_causes(schema, ROOT) == [Cause(
        "FieldValueInvalid",
        'Invalid value: apiextensions.ValidationRule{Rule:"self.a <= ", Message:"a is small", MessageExpression:"", '
        "Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}: "
        "compilation failed: ERROR: <input>:1:11: Syntax error: mismatched input '<EOF>' expecting {'[', '{', "
        "'(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n"
        " | self.a <= \n | ..........^",
        f"{ROOT}.properties[spec].x-kubernetes-validations[0].rule",
    )]


@pytest.mark.parametrize(
    ("rule", "field", "message_end"),
    [
        ({"rule": "self.replica > 0"}, "rule",
         "compilation failed: ERROR: <input>:1:5: undefined field 'replica'\n | self.replica > 0\n | ....^"),
        ({"rule": "self.replicas > limit"}, "rule",
         "compilation failed: ERROR: <input>:1:17: undeclared reference to 'limit' (in container '')\n"
         " | self.replicas > limit\n | ................^"),
        ({"rule": "self.name.shout() == ''"}, "rule",
         "compilation failed: ERROR: <input>:1:16: undeclared reference to 'shout' (in container '')\n"
         " | self.name.shout() == ''\n | ...............^"),
        ({"rule": "self.replicas > 0", "messageExpression": "'n=' + "}, "messageExpression",
         "messageExpression compilation failed: ERROR: <input>:1:8: Syntax error: mismatched input '<EOF>' expecting "
         "{'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, "
         "IDENTIFIER}\n | 'n=' + \n | .......^"),
    ],
)
def test_compile_errors_name_the_rule_field(rule, field, message_end):
    schema = crd_schema({"type": "object", "properties": {"replicas": {"type": "integer"}, "name": {"type": "string"}},
                         "x-kubernetes-validations": [rule]})
    [cause] = compile_causes(schema, ROOT)
    assert cause.reason == "FieldValueInvalid"
    assert cause.field == f"{ROOT}.properties[spec].x-kubernetes-validations[0].{field}"
    assert cause.message.startswith("Invalid value: apiextensions.ValidationRule{Rule:")
    assert cause.message.endswith(message_end)


@pytest.mark.parametrize(
    ("rule", "cause"),
    [
        ({"rule": "  "}, Cause("FieldValueRequired", "Required value: rule is not specified", "[0].rule")),
        ({"rule": "true", "reason": "FieldValueTooLong"}, Cause(
            "FieldValueNotSupported",
            'Unsupported value: "FieldValueTooLong": supported values: "FieldValueDuplicate", "FieldValueForbidden", '
            '"FieldValueInvalid", "FieldValueRequired"', "[0].reason")),
        ({"rule": "true", "fieldPath": ".nope"},
         Cause("FieldValueInvalid", 'Invalid value: ".nope": fieldPath must be a valid path', "[0].fieldPath")),
        ({"rule": "true", "fieldPath": "replicas"},
         Cause("FieldValueInvalid", 'Invalid value: "replicas": fieldPath must be a valid path', "[0].fieldPath")),
        ({"rule": "true", "message": "two\nlines"},
         Cause("FieldValueInvalid", 'Invalid value: "two\\nlines": message must not contain line breaks', "[0].message")),
        ({"rule": "true &&\ntrue"}, Cause(
            "FieldValueRequired", "Required value: message must be specified if rule contains line breaks", "[0].message")),
        ({"rule": "true", "messageExpression": " "}, Cause(
            "FieldValueRequired", "Required value: messageExpression must be non-empty if specified",
            "[0].messageExpression")),
        ({"rule": "self.replicas > 0", "optionalOldSelf": True}, Cause(
            "FieldValueInvalid", "Invalid value: true: may not be set if oldSelf is not used in rule",
            "[0].optionalOldSelf")),
    ],
)
def test_rule_entries_are_checked_like_upstream(rule, cause):
    schema = crd_schema({"type": "object", "properties": {"replicas": {"type": "integer"},
                                                          "labels": {"type": "object",
                                                                     "additionalProperties": {"type": "string"}}},
                         "x-kubernetes-validations": [rule]})
    prefix = f"{ROOT}.properties[spec].x-kubernetes-validations"
    assert compile_causes(schema, ROOT) == [Cause(cause.reason, cause.message, prefix + cause.field)]


def test_valid_field_paths_cover_properties_and_map_keys():
    schema = crd_schema({"type": "object", "properties": {"replicas": {"type": "integer"}, "labels": {
        "type": "object", "additionalProperties": {"type": "string"}}},
        "x-kubernetes-validations": [
            {"rule": "true", "fieldPath": ".replicas"},
            {"rule": "!has(self.labels) || !('x' in self.labels)", "fieldPath": ".labels['x.y/z']"},
            {"rule": "true", "fieldPath": "['replicas']"},
        ]})
    assert compile_causes(schema, ROOT) == []
    failing = crd_schema({"type": "object", "properties": {"labels": {
        "type": "object", "additionalProperties": {"type": "string"}}},
        "x-kubernetes-validations": [{"rule": "!('x.y/z' in self.labels)", "fieldPath": ".labels['x.y/z']"}]})
    [cause] = validate_rules(failing, obj({"labels": {"x.y/z": "1"}}), None)
    assert cause.field == "spec.labels[x.y/z]"


def test_transition_rules_are_refused_below_lists_that_do_not_correlate():
    item = {"type": "object", "properties": {"v": {"type": "string",
                                                   "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}
    schema = crd_schema({"type": "object", "properties": {
        "atomic": {"type": "array", "items": copy.deepcopy(item)},
        "keyed": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["v"],
                  "items": copy.deepcopy(item)},
    }})
    assert compile_causes(schema, ROOT) == [Cause(
        "FieldValueInvalid",
        'Invalid value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within '
        f"{ROOT}.properties[spec].properties[atomic]",
        f"{ROOT}.properties[spec].properties[atomic].items.properties[v].x-kubernetes-validations[0].rule",
    )]


def test_compiled_rules_are_cached():
    rule = {"rule": "self.a > 0", "message": "positive"}
    assert compile_rule(rule) is compile_rule(dict(rule))
    assert compile_rule(rule).program is compile_rule({"rule": "self.a > 0"}).program


@pytest.mark.parametrize(
    ("name", "escaped"),
    [("foo", "foo"), ("x-y", "x__dash__y"), ("a.b/c", "a__dot__b__slash__c"), ("a__b", "a__underscores__b"),
     ("namespace", "__namespace__"), ("1x", None), ("a b", None)],
)
def test_property_names_are_escaped_as_upstream(name, escaped):
    assert escape_property(name) == escaped


@given(st.integers(-5, 5), st.integers(-5, 5))
def test_rules_hold_or_fail_exactly_when_their_expression_does(low, high):
    causes = validate_rules(AUTOSCALER, obj({"minReplicas": low, "maxReplicas": high}), None)
    assert (causes != []) == (low > high)
    # Ratcheting: resubmitting the same object never fails on rules without oldSelf.
    same = obj({"minReplicas": low, "maxReplicas": high})
    assert validate_rules(AUTOSCALER, same, copy.deepcopy(same)) == []


@pytest.mark.parametrize(
    ("rule", "holds"),
    [
        ("isIP(self) && ip(self).family() == 4 && ip(self).isLoopback()", {"127.0.0.1": True, "10.0.0.1": False}),
        ("ip(self).isGlobalUnicast()", {"8.8.8.8": True, "::1": False, "fe80::1": False}),
        ("ip.isCanonical(self)", {"2001:db8::1": True, "2001:DB8::1": False}),
        ("cidr('10.0.0.0/8').containsIP(self)", {"10.1.2.3": True, "11.0.0.1": False}),
        ("isCIDR(self) && cidr(self).prefixLength() == 24 && cidr(self).ip() == ip('192.168.1.0')",
         {"192.168.1.0/24": True, "192.168.1.0/25": False}),
        ("cidr('10.0.0.0/8').containsCIDR(self) && cidr(self).masked() == cidr('10.1.0.0/16')",
         {"10.1.2.0/16": True, "10.1.0.0/8": False}),
    ],
)
def test_ip_and_cidr_libraries(rule, holds):
    schema = crd_schema({"type": "object", "properties": {"addr": {"type": "string", "x-kubernetes-validations": [
        {"rule": rule}]}}})
    assert compile_causes(schema, ROOT) == []
    for value, ok in holds.items():
        assert (validate_rules(schema, obj({"addr": value}), None) == []) is ok, value


def test_every_undefined_field_is_reported_with_has_at_its_parenthesis():
    # The position rules of cel-go, as seen in upstream error reports.
    rule = "self.type != 'secret' && self.type != 'configmap' || has(self.namespace) || self.nme == ''"
    schema = crd_schema({"type": "object", "properties": {"type": {"type": "string"}},
                         "x-kubernetes-validations": [{"rule": rule}]})
    [cause] = compile_causes(schema, ROOT)
    assert cause.message.endswith(
        "compilation failed: ERROR: <input>:1:57: undefined field 'namespace'\n"
        f" | {rule}\n | {'.' * 56}^\n"
        "ERROR: <input>:1:81: undefined field 'nme'\n"
        f" | {rule}\n | {'.' * 80}^"
    )


def test_values_below_uncorrelatable_items_ratchet_with_the_list():
    schema = crd_schema({"type": "object", "properties": {"ports": {"type": "array", "items": {
        "type": "object", "properties": {"port": {"type": "integer", "x-kubernetes-validations": [
            {"rule": "self < 1024", "message": "port too high"}]}}}}, "other": {"type": "string"}}})
    stored = obj({"ports": [{"port": 8080}], "other": "a"})
    assert validate_rules(schema, obj({"ports": [{"port": 8080}], "other": "b"}), stored) == []
    assert validate_rules(schema, obj({"ports": [{"port": 8080}, {"port": 80}], "other": "a"}), stored) == [
        Cause("FieldValueInvalid", 'Invalid value: "integer": port too high', "spec.ports[0].port")
    ]


def test_fields_of_comprehension_variables_are_checked_against_the_items_schema():
    rule = "self.templates.all(t, !has(t.metadata.namespace) || size(t.metadata.namespace) == 0)"
    template = {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {
        "metadata": {"type": "object"}, "spec": {"type": "object"}}}
    schema = crd_schema({"type": "object", "properties": {"templates": {"type": "array", "items": template}},
                         "x-kubernetes-validations": [{"rule": rule}]})
    [cause] = compile_causes(schema, ROOT)
    # As upstream reported it for kubeflow/trainer's CRDs.
    assert cause.message.endswith(
        "compilation failed: ERROR: <input>:1:27: undefined field 'namespace'\n"
        f" | {rule}\n | {'.' * 26}^\n"
        "ERROR: <input>:1:68: undefined field 'namespace'\n"
        f" | {rule}\n | {'.' * 67}^"
    )
    ok = "self.templates.all(t, t.spec.all(k, k != '') && t.metadata.name != '')"
    schema["properties"]["spec"]["x-kubernetes-validations"] = [{"rule": ok}]
    assert compile_causes(schema, ROOT) == []


def test_nested_comprehensions_are_followed():
    schema = crd_schema({"type": "object", "properties": {"groups": {"type": "array", "items": {
        "type": "object", "properties": {"members": {"type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"}}}}}}}},
        "x-kubernetes-validations": [{"rule": "self.groups.all(g, g.members.all(m, m.nmae != ''))"}]})
    [cause] = compile_causes(schema, ROOT)
    assert "undefined field 'nmae'" in cause.message
    schema["properties"]["spec"]["x-kubernetes-validations"] = [
        {"rule": "self.groups.all(g, g.members.all(m, m.name != ''))"}]
    assert compile_causes(schema, ROOT) == []
    assert len(validate_rules(schema, obj({"groups": [{"members": [{"name": "a"}, {"name": ""}]}]}), None)) == 1


def test_shape_checks_can_be_left_to_the_openapi_walk():
    schema = crd_schema({"type": "object", "properties": {"a": {"type": "integer"}}, "x-kubernetes-validations": [
        {"rule": "self.a > 0", "reason": "Bogus"}, {"rule": "self.a > 0", "fieldPath": ".b"}]})
    fields = [c.field.rsplit(".", 1)[1] for c in compile_causes(schema, ROOT)]
    assert fields == ["reason", "fieldPath"]
    assert [c.message for c in compile_causes(schema, ROOT, shape_checks=False)] == [
        'Invalid value: ".b": fieldPath must be a valid path'
    ]
    # Not compiled either while an entry is malformed, as upstream.
    schema["properties"]["spec"]["x-kubernetes-validations"] = [{"rule": "self.a >", "reason": "Bogus"}]
    assert compile_causes(schema, ROOT, shape_checks=False) == []


def test_malformed_rules_below_a_node_keep_its_rules_from_compiling():
    schema = crd_schema({"type": "object", "x-kubernetes-validations": [{"rule": "self.a >"}], "properties": {
        "a": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0", "reason": "Nope"}]}}})
    assert [c.field for c in compile_causes(schema, ROOT)] == [
        f"{ROOT}.properties[spec].properties[a].x-kubernetes-validations[0].reason"]
    schema["properties"]["spec"]["properties"]["a"]["x-kubernetes-validations"] = [{"rule": "self > 0"}]
    [cause] = compile_causes(schema, ROOT)
    assert cause.field == f"{ROOT}.properties[spec].x-kubernetes-validations[0].rule"
    assert "compilation failed" in cause.message


def test_rules_inside_all_of_are_not_compiled_but_run():
    schema = crd_schema({"type": "object", "properties": {"a": {"type": "integer"}},
                         "allOf": [{"x-kubernetes-validations": [{"rule": "self.a < 5", "message": "a too big"}]}]})
    assert compile_causes(schema, ROOT) == []
    assert validate_rules(schema, obj({"a": 7}), None) == [
        Cause("FieldValueInvalid", 'Invalid value: "": a too big', "spec")]


def test_optional_old_self_set_to_false_still_needs_old_self():
    schema = crd_schema({"type": "object", "properties": {"a": {"type": "integer"}},
                         "x-kubernetes-validations": [{"rule": "self.a > 0", "optionalOldSelf": False}]})
    assert compile_causes(schema, ROOT) == [Cause(
        "FieldValueInvalid", "Invalid value: false: may not be set if oldSelf is not used in rule",
        f"{ROOT}.properties[spec].x-kubernetes-validations[0].optionalOldSelf")]


# Rules in the style of Gateway API's CRDs: comprehensions over the node's own list,
# nested quantifiers, ternaries, raw strings, indexing, duration() on plain strings.
LISTENER = {"type": "object", "required": ["name", "port", "protocol"], "properties": {
    "name": {"type": "string"}, "port": {"type": "integer"}, "protocol": {"type": "string"},
    "hostname": {"type": "string"}, "tls": {"type": "object", "properties": {"mode": {"type": "string"}}}}}
GATEWAY = crd_schema({"type": "object", "properties": {
    "listeners": {
        "type": "array", "maxItems": 64, "items": LISTENER,
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "x-kubernetes-validations": [
            {"message": "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
             "rule": "self.all(l, l.protocol in ['HTTP', 'TCP', 'UDP'] ? !has(l.tls) : true)"},
            {"message": "Listener name must be unique within the Gateway",
             "rule": "self.all(l1, self.exists_one(l2, l1.name == l2.name))"},
            {"message": "Combination of port, protocol and hostname must be unique for each listener",
             "rule": "self.all(l1, self.exists_one(l2, l1.port == l2.port && l1.protocol == l2.protocol && "
                     "(has(l1.hostname) && has(l2.hostname) ? l1.hostname == l2.hostname : "
                     "!has(l1.hostname) && !has(l2.hostname))))"},
        ],
    },
    "path": {"type": "object", "properties": {"type": {"type": "string"}, "value": {"type": "string"}},
             "x-kubernetes-validations": [
                 {"message": "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
                  "rule": "(self.type in ['Exact','PathPrefix']) ? self.value.startsWith('/') : true"},
                 {"message": "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$)",
                  "rule": "(self.type in ['Exact','PathPrefix']) ? self.value.matches(r\"\"\"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$\"\"\") : true"},
             ]},
    "timeouts": {"type": "object", "properties": {"request": {"type": "string"}, "backendRequest": {"type": "string"}},
                 "x-kubernetes-validations": [{
                     "message": "backendRequest timeout cannot be longer than request timeout",
                     "rule": "!(has(self.request) && has(self.backendRequest) && duration(self.request) != duration('0s') "
                             "&& duration(self.backendRequest) > duration(self.request))"}]},
    "rules": {"type": "array", "items": {"type": "object", "properties": {
        "matches": {"type": "array", "items": {"type": "object"}}}},
        "x-kubernetes-validations": [{
            "message": "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128",
            "rule": "(self.size() > 0 ? self[0].matches.size() : 0) + (self.size() > 1 ? self[1].matches.size() : 0) <= 2"}]},
}})


def test_gateway_api_style_rules_compile_and_hold():
    assert compile_causes(GATEWAY, ROOT) == []
    good = {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"},
                          {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "a.example", "tls": {}}],
            "path": {"type": "PathPrefix", "value": "/api"},
            "timeouts": {"request": "10s", "backendRequest": "5s"},
            "rules": [{"matches": [{}]}, {"matches": [{}]}]}
    assert validate_rules(GATEWAY, obj(good), None) == []
    bad = {"listeners": [{"name": "a", "port": 80, "protocol": "HTTP", "tls": {}},
                         {"name": "b", "port": 80, "protocol": "HTTP"}],
           "path": {"type": "Exact", "value": "api//x y"},
           "timeouts": {"request": "1s", "backendRequest": "2m"},
           "rules": [{"matches": [{}, {}]}, {"matches": [{}]}]}
    messages = [(c.field, c.message.split(": ", 2)[-1]) for c in validate_rules(GATEWAY, obj(bad), None)]
    assert messages == [
        ("spec.listeners", "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"),
        ("spec.listeners", "Combination of port, protocol and hostname must be unique for each listener"),
        ("spec.path", "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']"),
        ("spec.path", "must only contain valid characters (matching "
                      "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$)"),
        ("spec.timeouts", "backendRequest timeout cannot be longer than request timeout"),
        ("spec.rules", "While 16 rules and 64 matches per rule are allowed, the total number of matches across "
                       "all rules in a route must be less than 128"),
    ]
