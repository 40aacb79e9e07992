"""Server-side apply and Update ownership tracking, with cases from upstream's structured-merge-diff tests."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timoner.api.errors import BadRequest
from timoner.api.patch import ApplyConflict, apply_config, decode_fields, track_update

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"


def deployment(replicas=1, image="nginx", labels=None, containers=None, **spec):
    containers = containers or [{"name": "nginx", "image": image}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", **({"labels": labels} if labels else {})},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
                 **spec},
    }


def apply(live, config, manager="kubectl", *, managed=None, force=False, now=T1, definition=DEPLOYMENT):
    return apply_config(live, config, managed_fields=managed, manager=manager, api_version="apps/v1",
                        definition=definition, force=force, now=now)


def owned(managed, manager, operation="Apply"):
    for e in managed:
        if e["manager"] == manager and e["operation"] == operation:
            return decode_fields(e["fieldsV1"])
    return frozenset()


def p(*names):
    return tuple(("f", n) for n in names)


def test_create_by_apply_owns_exactly_the_config():
    config = deployment()
    result = apply(None, config)
    assert result.object == config
    [entry] = result.managed_fields
    assert entry == {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
                     "fieldsType": "FieldsV1", "fieldsV1": entry["fieldsV1"]}
    assert entry["fieldsV1"] == {
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},  # LabelSelector is x-kubernetes-map-type: atomic
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}},
            },
        },
    }


def test_reapply_same_config_is_a_no_op_and_keeps_time():
    first = apply(None, deployment())
    again = apply(first.object, deployment(), managed=first.managed_fields, now=T2)
    assert again.object == first.object
    assert again.managed_fields == first.managed_fields


def test_conflict_with_updater_message_and_causes_as_upstream():
    live = deployment(replicas=1)
    managed = track_update(None, live, managed_fields=None, manager="kubectl-client-side-apply",
                           api_version="apps/v1", definition=DEPLOYMENT, now=T0)
    with pytest.raises(ApplyConflict) as caught:
        apply(live, deployment(replicas=3), managed=managed)
    err = caught.value
    assert err.code == 409 and err.reason == "Conflict"
    assert err.message == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
                           "using apps/v1: .spec.replicas")
    status = err.status()
    assert status["details"]["causes"] == [{
        "reason": "FieldManagerConflict",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
        "field": ".spec.replicas",
    }]


def test_same_value_is_shared_not_a_conflict():
    live = deployment(replicas=1)
    managed = track_update(None, live, managed_fields=None, manager="creator", api_version="apps/v1",
                           definition=DEPLOYMENT, now=T0)
    result = apply(live, deployment(replicas=1), managed=managed)
    assert p("spec", "replicas") in owned(result.managed_fields, "creator", "Update")
    assert p("spec", "replicas") in owned(result.managed_fields, "kubectl")


def test_two_appliers_conflict_and_force_takes_ownership():
    first = apply(None, deployment(replicas=1), "alice")
    with pytest.raises(ApplyConflict) as caught:
        apply(first.object, deployment(replicas=2, image="nginx:2"), "bob", managed=first.managed_fields)
    assert caught.value.message == (
        'Apply failed with 2 conflicts: conflicts with "alice":\n'
        '- .spec.replicas\n'
        '- .spec.template.spec.containers[name="nginx"].image')
    assert [c.field for c in caught.value.causes] == [
        ".spec.replicas", '.spec.template.spec.containers[name="nginx"].image']
    forced = apply(first.object, deployment(replicas=2, image="nginx:2"), "bob",
                   managed=first.managed_fields, force=True)
    assert forced.object["spec"]["replicas"] == 2
    assert p("spec", "replicas") not in owned(forced.managed_fields, "alice")
    assert p("spec", "replicas") in owned(forced.managed_fields, "bob")
    # alice still owns what bob set to the same value.
    assert p("spec", "selector") in owned(forced.managed_fields, "alice")


def test_dropped_field_is_removed():
    first = apply(None, deployment(labels={"a": "1", "b": "2"}))
    second = apply(first.object, deployment(labels={"a": "1"}), managed=first.managed_fields)
    assert second.object["metadata"]["labels"] == {"a": "1"}
    assert p("metadata", "labels", "b") not in owned(second.managed_fields, "kubectl")


def test_dropped_field_owned_by_another_manager_stays():
    first = apply(None, deployment(labels={"a": "1", "b": "2"}), "alice")
    shared = apply(first.object, {"apiVersion": "apps/v1", "kind": "Deployment",
                                  "metadata": {"name": "web", "labels": {"b": "2"}}}, "bob",
                   managed=first.managed_fields)
    second = apply(shared.object, deployment(labels={"a": "1"}), "alice", managed=shared.managed_fields)
    assert second.object["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert owned(second.managed_fields, "bob") == {p("metadata", "labels", "b")}


def test_dropped_list_item_is_removed_with_its_unowned_defaults():
    two = [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]
    first = apply(None, deployment(containers=two))
    live = copy.deepcopy(first.object)
    for c in live["spec"]["template"]["spec"]["containers"]:
        c["terminationMessagePath"] = "/dev/termination-log"  # defaulted, owned by nobody
    second = apply(live, deployment(containers=[{"name": "a", "image": "x"}]), managed=first.managed_fields)
    assert second.object["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "x", "terminationMessagePath": "/dev/termination-log"}]


def test_associative_list_merges_items_of_two_managers():
    first = apply(None, deployment(containers=[{"name": "a", "image": "x"}]), "alice")
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "y"}]}}}}
    second = apply(first.object, config, "bob", managed=first.managed_fields)
    assert [c["name"] for c in second.object["spec"]["template"]["spec"]["containers"]] == ["a", "b"]


def test_ports_key_defaults_protocol():
    ports = [{"containerPort": 80}]
    result = apply(None, deployment(containers=[{"name": "a", "image": "x", "ports": ports}]))
    fields = result.managed_fields[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in fields['k:{"name":"a"}']["f:ports"]


def test_atomic_list_is_replaced_and_owned_whole():
    first = apply(None, deployment(containers=[{"name": "a", "image": "x", "args": ["1", "2"]}]))
    second = apply(first.object, deployment(containers=[{"name": "a", "image": "x", "args": ["3"]}]),
                   managed=first.managed_fields)
    assert second.object["spec"]["template"]["spec"]["containers"][0]["args"] == ["3"]
    item = ("k", (("name", '"a"'),))
    assert (*p("spec", "template", "spec", "containers"), item, ("f", "args")) in owned(
        second.managed_fields, "kubectl")


def test_atomic_map_selector_conflicts_as_a_whole():
    first = apply(None, deployment(), "alice")
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"selector": {"matchLabels": {"app": "web", "x": "y"}}}}
    with pytest.raises(ApplyConflict) as caught:
        apply(first.object, config, "bob", managed=first.managed_fields)
    assert [c.field for c in caught.value.causes] == [".spec.selector"]


def test_set_list_of_finalizers_union():
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a"]}}
    first = apply(None, config, "alice", definition="io.k8s.api.core.v1.ConfigMap")
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["b"]}}
    second = apply(first.object, other, "bob", managed=first.managed_fields,
                   definition="io.k8s.api.core.v1.ConfigMap")
    assert second.object["metadata"]["finalizers"] == ["a", "b"]


def test_free_form_kind_merges_maps_and_replaces_lists():
    live = {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"}, "spec": {"a": 1, "l": [1, 2]}}
    first = apply(None, live, definition=None)
    second = apply(first.object, {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"},
                                  "spec": {"l": [3]}}, definition=None, managed=first.managed_fields)
    assert second.object["spec"] == {"l": [3]}


def test_missing_key_and_duplicate_keys_are_bad_request():
    with pytest.raises(BadRequest):
        apply(None, deployment(containers=[{"image": "x"}]))
    with pytest.raises(BadRequest):
        apply(None, deployment(containers=[{"name": "a"}, {"name": "a"}]))


def test_update_takes_changed_fields_from_others():
    first = apply(None, deployment(replicas=1), "alice")
    changed = copy.deepcopy(first.object)
    changed["spec"]["replicas"] = 5
    managed = track_update(first.object, changed, managed_fields=first.managed_fields, manager="hpa",
                           api_version="apps/v1", definition=DEPLOYMENT, now=T2)
    assert p("spec", "replicas") not in owned(managed, "alice")
    assert owned(managed, "hpa", "Update") == {p("spec", "replicas")}
    # Apply entries sort before Update entries.
    assert [e["operation"] for e in managed] == ["Apply", "Update"]
    # alice may now drop replicas without removing the value hpa owns.
    config = deployment()
    del config["spec"]["replicas"]
    again = apply(changed, config, "alice", managed=managed, now=T2)
    assert again.object["spec"]["replicas"] == 5


def test_update_never_owns_system_metadata():
    obj = deployment()
    obj["metadata"].update(uid="u", resourceVersion="1", generation=1, creationTimestamp=T0)
    managed = track_update(None, obj, managed_fields=None, manager="m", api_version="apps/v1",
                           definition=DEPLOYMENT, now=T0)
    fields = owned(managed, "m", "Update")
    assert not any(path[0] in (("f", "apiVersion"), ("f", "kind")) for path in fields)
    assert not any(path[:2] == p("metadata", "uid") for path in fields)
    assert p("metadata", "name") not in fields


def test_update_removing_everything_drops_the_entry():
    live = deployment()
    managed = track_update(None, live, managed_fields=None, manager="m", api_version="apps/v1",
                           definition=DEPLOYMENT, now=T0)
    bare = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    assert track_update(live, bare, managed_fields=managed, manager="m", api_version="apps/v1",
                        definition=DEPLOYMENT, now=T1) == []


def test_subresource_is_part_of_identity():
    managed = apply_config(None, deployment(), managed_fields=None, manager="m", api_version="apps/v1",
                           definition=DEPLOYMENT, force=False, now=T0, subresource="status")
    assert managed.managed_fields[0]["subresource"] == "status"


_labels = st.dictionaries(st.sampled_from("abcde"), st.sampled_from(["1", "2"]), max_size=5)


@settings(max_examples=60, deadline=None)
@given(_labels, _labels, st.integers(1, 3))
def test_apply_is_idempotent_and_result_holds_config(first_labels, second_labels, replicas):
    one = apply(None, deployment(labels=first_labels or None))
    config = deployment(replicas=replicas, labels=second_labels or None)
    two = apply(one.object, config, managed=one.managed_fields, now=T2)
    # The single applier's object is exactly its latest configuration.
    assert two.object == config
    three = apply(two.object, config, managed=two.managed_fields, now="2026-01-01T00:00:09Z")
    assert three.object == two.object and three.managed_fields == two.managed_fields


@settings(max_examples=60, deadline=None)
@given(_labels, _labels)
def test_forced_apply_leaves_fields_owned_once_or_shared_at_equal_value(alice_labels, bob_labels):
    one = apply(None, deployment(labels=alice_labels or None), "alice")
    bob = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": bob_labels}}
    two = apply(one.object, bob, "bob", managed=one.managed_fields, force=True)
    labels = two.object["metadata"].get("labels", {})
    for key, value in bob_labels.items():
        assert labels[key] == value
    for key, value in alice_labels.items():
        if key not in bob_labels:
            assert labels[key] == value
    alice = owned(two.managed_fields, "alice")
    for key in bob_labels:
        if alice_labels.get(key) != bob_labels[key]:
            assert p("metadata", "labels", key) not in alice


def test_stored_list_without_keys_is_handled_as_atomic_by_updates():
    # Written before ownership was tracked: two containers without a name cannot be keyed.
    live = deployment(containers=[{"image": "x"}, {"image": "y"}])
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 2
    managed = track_update(live, new, managed_fields=None, manager="m", api_version="apps/v1",
                           definition=DEPLOYMENT, now=T0)
    assert owned(managed, "m", "Update") == {p("spec", "replicas")}
    changed = copy.deepcopy(new)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "z"
    managed = track_update(new, changed, managed_fields=managed, manager="m", api_version="apps/v1",
                           definition=DEPLOYMENT, now=T1)
    assert p("spec", "template", "spec", "containers") in owned(managed, "m", "Update")


def test_ignored_paths_are_never_owned():
    live = deployment()
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 1}
    managed = track_update(live, new, managed_fields=None, manager="m", api_version="apps/v1",
                           definition=DEPLOYMENT, now=T0, ignored=frozenset({p("status")}))
    assert managed == []
