"""Claim/volume matching (upstream's FindMatchingVolume and the binder's access-mode index) and default classes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.persistentvolume import (
    claim_class,
    default_class,
    find_best_volume,
    find_matching_volume,
    volume_capacity,
    volume_claim_mismatch,
)


def claim(size="1Gi", *, cls="c", modes=("ReadWriteOnce",), selector=None, mode=None, name="claim", uid="u1"):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, "storageClassName": cls}
    if selector is not None:
        spec["selector"] = selector
    if mode is not None:
        spec["volumeMode"] = mode
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid}, "spec": spec}


def volume(name, size="1Gi", *, cls="c", modes=("ReadWriteOnce",), phase="Available", labels=None, ref=None,
           mode=None, deleting=False):
    spec = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls}
    if ref is not None:
        spec["claimRef"] = ref
    if mode is not None:
        spec["volumeMode"] = mode
    meta = {"name": name, "labels": labels or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def names(found):
    return found["metadata"]["name"] if found is not None else None


@pytest.mark.parametrize(("wanted", "volumes", "expected"), [
    (claim("1Gi"), [volume("a", "2Gi"), volume("b", "1Gi"), volume("c", "500Mi")], "b"),
    (claim("1Gi"), [volume("a", "2Gi", phase="Bound"), volume("b", "3Gi")], "b"),
    (claim("1Gi"), [volume("a", "2Gi", cls="other")], None),
    (claim("1Gi", cls=""), [volume("a", "2Gi", cls=""), volume("b", "1Gi")], "a"),
    (claim("1Gi", selector={"matchLabels": {"t": "gold"}}), [volume("a", "1Gi"), volume("b", "5Gi", labels={"t": "gold"})],
     "b"),
    (claim("1Gi", selector={"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["gold"]}]}),
     [volume("a", "1Gi", labels={"t": "gold"}), volume("b", "5Gi")], "b"),
    (claim("1Gi", mode="Block"), [volume("a", "1Gi"), volume("b", "2Gi", mode="Block")], "b"),
    (claim("1Gi"), [volume("a", "1Gi", deleting=True)], None),
    (claim("1Gi"), [volume("a", "1Gi", ref={"namespace": "ns", "name": "someone-else"})], None),
    # Pre-bound to this claim (by name, or name and uid): wins over a smaller free one, even if not Available.
    (claim("1Gi"), [volume("a", "1Gi"), volume("b", "9Gi", phase="Released",
                                                ref={"namespace": "ns", "name": "claim"})], "b"),
    (claim("1Gi"), [volume("a", "1Gi"), volume("b", "9Gi", ref={"namespace": "ns", "name": "claim", "uid": "u1"})],
     "b"),
    (claim("1Gi"), [volume("a", "1Gi"), volume("b", "9Gi", ref={"namespace": "ns", "name": "claim", "uid": "old"})],
     "a"),
    # Pre-bound but too small: not a match (capacity is checked first, as upstream).
    (claim("1Gi"), [volume("b", "1Mi", ref={"namespace": "ns", "name": "claim"})], None),
    # Access modes: the smallest set holding the claim's modes goes first, then size.
    (claim("1Gi"), [volume("a", "1Gi", modes=("ReadWriteOnce", "ReadOnlyMany")), volume("b", "5Gi")], "b"),
    (claim("1Gi", modes=("ReadWriteMany",)), [volume("a", "1Gi"), volume("b", "5Gi", modes=("ReadWriteMany",))], "b"),
    (claim("1Gi", modes=("ReadWriteMany",)), [volume("a", "1Gi")], None),
], ids=["smallest-fitting", "only-available", "class-differs", "no-class", "selector", "selector-notin",
        "volume-mode", "deleting", "bound-elsewhere", "prebound-by-name", "prebound-by-uid", "prebound-old-uid",
        "prebound-too-small", "fewer-modes-first", "rwx", "no-modes"])
def test_find_best_volume(wanted, volumes, expected):
    assert names(find_best_volume(wanted, volumes)) == expected


def test_delayed_binding_leaves_free_volumes_to_the_scheduler():
    free = volume("a", "1Gi")
    prebound = volume("b", "2Gi", ref={"namespace": "ns", "name": "claim"})
    assert find_best_volume(claim(), [free], delay_binding=True) is None
    assert names(find_best_volume(claim(), [free, prebound], delay_binding=True)) == "b"


def test_node_check_filters_and_vetoes_prebound():
    on_n1 = volume("a", "1Gi", labels={"node": "n1"})
    on_n2 = volume("b", "1Gi", labels={"node": "n2"})
    node_is = lambda wanted: lambda v: v["metadata"]["labels"].get("node") == wanted  # noqa: E731
    assert names(find_matching_volume(claim(), [on_n1, on_n2], node_matches=node_is("n2"))) == "b"
    assert names(find_matching_volume(claim(), [on_n1, on_n2], node_matches=node_is("n2"), excluded=["b"])) is None
    prebound_n1 = volume("c", "1Gi", labels={"node": "n1"}, ref={"namespace": "ns", "name": "claim"})
    assert find_matching_volume(claim(), [prebound_n1, on_n2], node_matches=node_is("n2")) is None
    # On the scheduler's path access modes are checked per volume too.
    rox = volume("d", "1Gi", modes=("ReadOnlyMany",), labels={"node": "n2"})
    assert find_matching_volume(claim(), [rox], node_matches=node_is("n2")) is None


SIZES = st.sampled_from(["100Mi", "500Mi", "1Gi", "2Gi", "5Gi"])


@given(st.lists(st.tuples(SIZES, st.sampled_from(["Available", "Bound", "Released"]),
                          st.sampled_from(["c", "other"])), max_size=8), SIZES)
def test_the_match_fits_and_none_smaller_does(specs, request_size):
    volumes = [volume(f"v{i}", size, phase=phase, cls=cls) for i, (size, phase, cls) in enumerate(specs)]
    wanted = claim(request_size)
    found = find_matching_volume(wanted, volumes)
    fitting = [v for v in volumes if v["status"]["phase"] == "Available" and v["spec"]["storageClassName"] == "c"
               and volume_capacity(v) >= volume_capacity({"spec": {"capacity": {"storage": request_size}}})]
    if not fitting:
        assert found is None
    else:
        assert found is not None and volume_claim_mismatch(found, wanted) is None
        assert volume_capacity(found) == min(volume_capacity(v) for v in fitting)


def test_volume_claim_mismatch():
    assert volume_claim_mismatch(volume("a", "1Gi"), claim("1Gi")) is None
    assert volume_claim_mismatch(volume("a", "1Mi"), claim("1Gi")) == "requested PV is too small"
    assert volume_claim_mismatch(volume("a", "1Gi", cls="x"), claim("1Gi")) == "storageClassName does not match"
    assert volume_claim_mismatch(volume("a", "1Gi", mode="Block"), claim("1Gi")) == "incompatible volumeMode"
    assert volume_claim_mismatch(volume("a", "1Gi", modes=("ReadOnlyMany",)), claim("1Gi")) == "incompatible accessMode"
    assert volume_capacity(volume("a", "1Gi")) == Decimal(1024 ** 3)


def sc(name, created, default=True, beta=False):
    key = "storageclass.beta.kubernetes.io/is-default-class" if beta else "storageclass.kubernetes.io/is-default-class"
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": {key: "true" if default else "false"}}}


@pytest.mark.parametrize(("classes", "expected"), [
    ([], None),
    ([sc("a", "2026-01-01T00:00:00Z", default=False)], None),
    ([sc("a", "2026-01-01T00:00:00Z"), sc("b", "2026-01-02T00:00:00Z")], "b"),
    ([sc("b", "2026-01-01T00:00:00Z"), sc("a", "2026-01-01T00:00:00Z")], "a"),
    ([sc("old", "2025-01-01T00:00:00Z", beta=True), sc("x", "2026-01-01T00:00:00Z", default=False)], "old"),
], ids=["none", "not-default", "newest", "tie-by-name", "beta-annotation"])
def test_default_class(classes, expected):
    found = default_class(classes)
    assert (found["metadata"]["name"] if found else None) == expected


def test_claim_class_prefers_the_beta_annotation():
    beta = claim(cls="spec")
    beta["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "annotated"}
    assert claim_class(beta) == "annotated"
    assert claim_class(claim(cls="")) == ""
