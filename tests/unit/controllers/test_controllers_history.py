"""ControllerRevision history, pure parts: revision data, hashing, names, equality, ordering, numbering."""

from __future__ import annotations

import copy
import re

from hypothesis import given
from hypothesis import strategies as st

from timoner.controllers import _history as history


def owner(name="web", *, image="busybox", labels=None, annotations=None, kind="StatefulSet"):
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"template": {"metadata": {"labels": labels or {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def revision(name, number, created="2024-01-01T00:00:00Z", data=None):
    return {"metadata": {"name": name, "creationTimestamp": created}, "revision": number, "data": data or {}}


def test_template_patch_replaces_the_template_with_keys_sorted_as_go_prints_them():
    data = history.template_patch(owner())
    assert data == {"spec": {"template": {
        "$patch": "replace",
        "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
        "spec": {"containers": [{"image": "busybox", "name": "c"}]}}}}
    template = data["spec"]["template"]
    assert list(template) == ["$patch", "metadata", "spec"]
    assert list(template["spec"]["containers"][0]) == ["image", "name"]


def test_apply_revision_restores_the_template_and_nothing_else():
    old, new = owner(image="busybox:1"), owner(image="busybox:2")
    new["spec"]["replicas"] = 5
    rev = history.new_revision(old, history.template_patch(old), 1, 0)
    restored = history.apply_revision(new, rev)
    assert restored["spec"]["replicas"] == 5
    assert restored["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
    assert "$patch" not in restored["spec"]["template"]
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"  # not mutated


def test_new_revision_is_named_labelled_owned_and_annotated_like_its_owner():
    sts = owner(annotations={"kubernetes.io/change-cause": "kubectl set image"})
    data = history.template_patch(sts)
    rev = history.new_revision(sts, data, 4, 0)
    hash_ = history.hash_revision(data, 0)
    assert rev["metadata"]["name"] == f"web-{hash_}"
    assert rev["metadata"]["labels"] == {"app": "web", history.HASH_LABEL: hash_}
    assert rev["metadata"]["annotations"] == {"kubernetes.io/change-cause": "kubectl set image"}
    assert rev["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                                   "uid": "uid-web", "controller": True, "blockOwnerDeletion": True}]
    assert rev["revision"] == 4 and rev["data"] == data
    ds_rev = history.new_revision(owner(kind="DaemonSet"), data, 1, None, hash_label=history.REVISION_HASH_LABEL)
    assert ds_rev["metadata"]["labels"][history.REVISION_HASH_LABEL] == history.hash_revision(data, None)


def test_hash_is_stable_label_safe_and_moves_with_template_and_collision_count():
    data = history.template_patch(owner())
    hash_ = history.hash_revision(data, 0)
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", hash_)
    assert history.hash_revision(copy.deepcopy(data), 0) == hash_
    assert history.hash_revision(data, 1) != hash_
    assert history.hash_revision(history.template_patch(owner(image="other")), 0) != hash_
    # Unset and empty are the same to apimachinery, and so to the hash.
    padded = copy.deepcopy(data)
    padded["spec"]["template"]["spec"]["volumes"] = []
    assert history.hash_revision(padded, 0) == hash_


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=6),
       st.integers(min_value=0, max_value=2**31 - 1))
def test_hash_ignores_key_order(labels, collisions):
    forward = {"spec": {"template": {"metadata": {"labels": dict(labels)}}}}
    backward = {"spec": {"template": {"metadata": {"labels": dict(reversed(list(labels.items())))}}}}
    assert history.hash_revision(forward, collisions) == history.hash_revision(backward, collisions)


def test_revision_name_keeps_names_valid():
    assert history.revision_name("web", "abc") == "web-abc"
    assert history.revision_name("x" * 300, "abc") == "x" * 223 + "-abc"


def test_equal_revisions_compare_data_semantically():
    a = revision("a", 1, data={"spec": {"template": {"metadata": {"labels": {"app": "x"}, "annotations": {}}}}})
    b = revision("b", 2, data={"spec": {"template": {"metadata": {"labels": {"app": "x"}}}}})
    c = revision("c", 3, data={"spec": {"template": {"metadata": {"labels": {"app": "y"}}}}})
    assert history.equal_revision(a, b) and not history.equal_revision(a, c)
    assert history.find_equal_revisions([a, b, c], b) == [a, b]
    assert not history.equal_revision(a, None) and history.equal_revision(None, None)


def test_sort_by_number_then_creation_then_name_and_the_next_number():
    revs = [revision("c", 2), revision("b", 1, "2024-01-02T00:00:00Z"), revision("a", 1, "2024-01-02T00:00:00Z"),
            revision("z", 1, "2024-01-01T00:00:00Z")]
    assert [r["metadata"]["name"] for r in history.sort_revisions(revs)] == ["z", "a", "b", "c"]
    assert history.next_revision(revs) == 3
    assert history.next_revision([]) == 1


def test_live_hashes_are_the_revision_labels_pods_carry():
    pods = [{"metadata": {"labels": {history.REVISION_HASH_LABEL: "h1"}}}, {"metadata": {"labels": {}}},
            {"metadata": {"labels": {history.REVISION_HASH_LABEL: "h2"}}}, {"metadata": {}}]
    assert history.live_hashes(pods) == {"h1", "h2"}
