"""The admission chain: upstream's order, the two phases, and where the Store calls it."""

from __future__ import annotations

import pytest

from timoner.api import errors
from timoner.api.registry import BUILTIN
from timoner.apiserver.admission import CREATE, DELETE, PLUGIN_ORDER, UPDATE, AdmissionChain, Attributes
from timoner.apiserver.store import Store

CONFIGMAPS = next(r for r in BUILTIN if r.plural == "configmaps" and not r.group)
NAMESPACES = next(r for r in BUILTIN if r.plural == "namespaces" and not r.group)


class Recorder:
    """A plugin that records its calls into a shared log; optionally mutates or refuses."""

    def __init__(self, name: str, log: list, *, label: str | None = None, refuse: str | None = None,
                 only: str | None = None) -> None:
        self.name = name
        self.log = log
        self.label = label
        self.refuse = refuse
        self.only = only

    def handles(self, attrs: Attributes) -> bool:
        return self.only is None or attrs.operation == self.only

    async def admit(self, attrs: Attributes) -> None:
        meta = (attrs.obj or {}).get("metadata") or {}
        self.log.append(("admit", self.name, attrs.operation, meta.get("name"), meta.get("generateName"),
                         "uid" in meta))
        if self.label and attrs.obj is not None:
            attrs.obj["metadata"].setdefault("labels", {})[self.label] = "yes"

    async def validate(self, attrs: Attributes) -> None:
        obj = attrs.obj or {}
        self.log.append(("validate", self.name, attrs.operation, attrs.name,
                         dict((obj.get("metadata") or {}).get("labels") or {}),
                         (attrs.old or {}).get("metadata", {}).get("name")))
        if self.refuse:
            raise errors.Forbidden(self.refuse)


def test_plugins_run_in_upstream_order_whatever_the_registration_order():
    log: list = []
    chain = AdmissionChain([Recorder("ResourceQuota", log), Recorder("Custom", log),
                            Recorder("MutatingAdmissionWebhook", log), Recorder("NamespaceLifecycle", log)])
    chain.register(Recorder("LimitRanger", log))
    assert [p.name for p in chain.plugins] == [
        "NamespaceLifecycle", "LimitRanger", "MutatingAdmissionWebhook", "ResourceQuota", "Custom"]
    assert PLUGIN_ORDER.index("MutatingAdmissionWebhook") < PLUGIN_ORDER.index("ValidatingAdmissionWebhook")
    with pytest.raises(ValueError):
        chain.register(Recorder("LimitRanger", log))


async def test_mutating_phase_then_validating_phase_only_for_handling_plugins():
    log: list = []
    chain = AdmissionChain([Recorder("LimitRanger", log, label="a"), Recorder("ServiceAccount", log, only=DELETE),
                            Recorder("ResourceQuota", log)])
    attrs = Attributes(CREATE, CONFIGMAPS, "ns", "x", {"metadata": {"name": "x"}}, None)
    await chain.admit(attrs)
    await chain.validate(attrs)
    assert [(e[0], e[1]) for e in log] == [("admit", "LimitRanger"), ("admit", "ResourceQuota"),
                                          ("validate", "LimitRanger"), ("validate", "ResourceQuota")]
    assert log[-1][4] == {"a": "yes"}  # the validating phase sees the mutated object


@pytest.fixture
async def store(store: Store) -> Store:
    """conftest's Store, with the namespace "ns" in it."""
    await store.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
    return store


def _cm(**meta) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


async def test_store_create_admits_before_preparing_and_validates_before_writing(store):
    log: list = []
    store.admission = AdmissionChain([Recorder("LimitRanger", log, label="mutated"), Recorder("ResourceQuota", log)])
    created = await store.create(CONFIGMAPS, "ns", _cm(generateName="g-"))
    assert [(e[0], e[1]) for e in log] == [("admit", "LimitRanger"), ("admit", "ResourceQuota"),
                                          ("validate", "LimitRanger"), ("validate", "ResourceQuota")]
    admit, validate = log[0], log[2]
    # mutating admission: before name generation and before system fields
    assert admit == ("admit", "LimitRanger", CREATE, None, "g-", False)
    assert validate[0:3] == ("validate", "LimitRanger", CREATE)
    assert validate[3] == created["metadata"]["name"] and validate[3].startswith("g-")
    assert validate[4] == {"mutated": "yes"}
    assert created["metadata"]["labels"] == {"mutated": "yes"}


async def test_store_refusal_writes_nothing(store):
    log: list = []
    store.admission = AdmissionChain([Recorder("ResourceQuota", log, refuse="no")])
    revision = store.cache.revision
    with pytest.raises(errors.Forbidden):
        await store.create(CONFIGMAPS, "ns", _cm(name="refused"))
    assert await store.backend.current_revision() == revision
    store.admission = None
    await store.create(CONFIGMAPS, "ns", _cm(name="kept"))
    store.admission = AdmissionChain([Recorder("ResourceQuota", log, refuse="no")])
    with pytest.raises(errors.Forbidden):
        await store.update(CONFIGMAPS, "ns", "kept", lambda cur: {**cur, "data": {"a": "b"}})
    with pytest.raises(errors.Forbidden):
        await store.delete(CONFIGMAPS, "ns", "kept")
    assert "data" not in (await store.get(CONFIGMAPS, "ns", "kept"))


async def test_store_update_and_delete_attributes(store):
    await store.create(CONFIGMAPS, "ns", _cm(name="cm", labels={"v": "1"}))
    log: list = []
    store.admission = AdmissionChain([Recorder("LimitRanger", log, label="m")])

    def relabel(cur: dict) -> dict:
        cur["metadata"]["labels"]["v"] = "2"
        return cur

    updated = await store.update(CONFIGMAPS, "ns", "cm", relabel)
    assert updated["metadata"]["labels"] == {"v": "2", "m": "yes"}
    assert log[0][0:3] == ("admit", "LimitRanger", UPDATE)
    assert log[1] == ("validate", "LimitRanger", UPDATE, "cm", {"v": "2", "m": "yes"}, "cm")
    log.clear()
    await store.delete(CONFIGMAPS, "ns", "cm")
    assert log == [("validate", "LimitRanger", DELETE, "cm", {}, "cm")]


async def test_store_mutation_is_validated_again(store):
    class Breaker:
        name = "LimitRanger"

        def handles(self, attrs):
            return True

        async def admit(self, attrs):
            attrs.obj["metadata"]["labels"] = {"bad": "not valid!"}

        async def validate(self, attrs):
            return None

    store.admission = AdmissionChain([Breaker()])
    with pytest.raises(errors.Invalid) as caught:
        await store.create(CONFIGMAPS, "ns", _cm(name="broken"))
    assert caught.value.code == 422
    assert caught.value.causes[0].field == "metadata.labels"
