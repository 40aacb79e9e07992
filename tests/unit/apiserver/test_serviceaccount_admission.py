"""The ServiceAccount admission plugin, driven with `Attributes` built by hand and a dict of accounts."""

from __future__ import annotations

import copy
import re

import pytest

from timoner.api import errors
from timoner.api.registry import BUILTIN
from timoner.apiserver.admission import CREATE, UPDATE, Attributes
from timoner.apiserver.admission._serviceaccount import (
    DEFAULT_API_TOKEN_MOUNT_PATH,
    ServiceAccountAdmission,
    token_volume_source,
)

PODS = next(r for r in BUILTIN if r.plural == "pods" and not r.group)
CONFIGMAPS = next(r for r in BUILTIN if r.plural == "configmaps" and not r.group)
MOUNT = {"readOnly": True, "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}


class Accounts:
    """A ServiceAccountGetter over a dict; records what was asked."""

    def __init__(self, *accounts: dict, namespaces: tuple[str, ...] = ("ns",)) -> None:
        self.accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]): a for a in accounts}
        self.namespaces = set(namespaces)
        self.asked: list[tuple[str, str]] = []

    async def service_account(self, namespace: str, name: str) -> dict | None:
        self.asked.append((namespace, name))
        return self.accounts.get((namespace, name))

    async def namespace_active(self, namespace: str) -> bool:
        return namespace in self.namespaces


def account(name: str = "default", ns: str = "ns", **fields) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}, **fields}


def pod(name: str = "p", *, spec: dict | None = None, annotations: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": "ns"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": spec if spec is not None else {"containers": [{"name": "c", "image": "busybox"}]}}


def attrs(obj: dict, *, operation: str = CREATE, info=PODS, subresource: str = "") -> Attributes:
    return Attributes(operation, info, "ns", obj["metadata"].get("name", ""), obj,
                      copy.deepcopy(obj) if operation == UPDATE else None, subresource=subresource)


async def admitted(plugin: ServiceAccountAdmission, obj: dict) -> dict:
    a = attrs(obj)
    assert plugin.handles(a)
    await plugin.admit(a)
    await plugin.validate(a)
    return a.obj


async def test_defaults_the_account_and_mounts_the_token_volume():
    out = await admitted(ServiceAccountAdmission(Accounts(account())), pod())
    spec = out["spec"]
    assert spec["serviceAccountName"] == "default"
    (volume,) = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", volume["name"])
    assert volume["projected"] == token_volume_source()
    sources = volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert volume["projected"]["defaultMode"] == 420
    assert spec["containers"][0]["volumeMounts"] == [{"name": volume["name"], **MOUNT}]


async def test_every_container_and_init_container_gets_the_mount_but_not_ephemeral_ones():
    spec = {"initContainers": [{"name": "i", "image": "x"}],
            "containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                           {"name": "b", "image": "x"}],
            "ephemeralContainers": [{"name": "e", "image": "x"}],
            "volumes": [{"name": "data", "emptyDir": {}}]}
    out = (await admitted(ServiceAccountAdmission(Accounts(account())), pod(spec=spec)))["spec"]
    token = out["volumes"][-1]["name"]
    assert [v["name"] for v in out["volumes"]] == ["data", token]
    assert out["initContainers"][0]["volumeMounts"] == [{"name": token, **MOUNT}]
    assert out["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}, {"name": token, **MOUNT}]
    assert out["containers"][1]["volumeMounts"] == [{"name": token, **MOUNT}]
    assert "volumeMounts" not in out["ephemeralContainers"][0]


async def test_an_existing_mount_at_the_path_is_left_alone():
    mine = [{"name": "own", "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}]
    spec = {"containers": [{"name": "c", "image": "x", "volumeMounts": mine}],
            "volumes": [{"name": "own", "secret": {"secretName": "s"}}]}
    out = (await admitted(ServiceAccountAdmission(Accounts(account())), pod(spec=copy.deepcopy(spec))))["spec"]
    assert out["containers"] == spec["containers"]
    assert out["volumes"] == spec["volumes"]  # no container needs the token volume: none is added


async def test_an_existing_kube_api_access_volume_is_reused():
    spec = {"containers": [{"name": "c", "image": "x"}],
            "volumes": [{"name": "kube-api-access-mine", "projected": {"sources": []}}]}
    out = (await admitted(ServiceAccountAdmission(Accounts(account())), pod(spec=spec)))["spec"]
    assert [v["name"] for v in out["volumes"]] == ["kube-api-access-mine"]
    assert out["containers"][0]["volumeMounts"] == [{"name": "kube-api-access-mine", **MOUNT}]


@pytest.mark.parametrize(("pod_says", "account_says", "mounted"), [
    (None, None, True),
    (False, None, False),
    (None, False, False),
    (True, False, True),   # the pod's preference wins
    (False, True, False),
])
async def test_automount_service_account_token(pod_says, account_says, mounted):
    sa = account() if account_says is None else account(automountServiceAccountToken=account_says)
    spec = {"containers": [{"name": "c", "image": "x"}]}
    if pod_says is not None:
        spec["automountServiceAccountToken"] = pod_says
    out = (await admitted(ServiceAccountAdmission(Accounts(sa)), pod(spec=spec)))["spec"]
    assert ("volumes" in out) is mounted
    assert ("volumeMounts" in out["containers"][0]) is mounted
    assert out["serviceAccountName"] == "default"


async def test_a_missing_account_is_forbidden_in_upstreams_words():
    plugin = ServiceAccountAdmission(Accounts(account()))
    obj = pod(spec={"serviceAccountName": "robot", "containers": [{"name": "c", "image": "x"}]})
    with pytest.raises(errors.Forbidden) as caught:
        await plugin.admit(attrs(obj))
    exc = caught.value
    assert exc.code == 403 and exc.reason == "Forbidden"
    assert exc.message == ('pods "p" is forbidden: error looking up service account ns/robot: '
                           'serviceaccount "robot" not found')
    assert exc.status()["details"] == {"name": "p", "kind": "pods"}


async def test_a_generated_name_is_what_the_refusal_names():
    obj = pod(name="")
    obj["metadata"] = {"generateName": "web-", "namespace": "ns"}
    with pytest.raises(errors.Forbidden, match=r'^pods "web-" is forbidden: error looking up service account '
                                               r'ns/default: serviceaccount "default" not found$'):
        await ServiceAccountAdmission(Accounts()).admit(attrs(obj))


async def test_a_named_account_is_used_and_its_pull_secrets_copied():
    sa = account("robot", imagePullSecrets=[{"name": "regcred"}])
    accounts = Accounts(sa)
    obj = pod(spec={"serviceAccountName": "robot", "containers": [{"name": "c", "image": "x"}]})
    out = (await admitted(ServiceAccountAdmission(accounts), obj))["spec"]
    assert out["serviceAccountName"] == "robot"
    assert out["imagePullSecrets"] == [{"name": "regcred"}]
    assert ("ns", "robot") in accounts.asked
    # A pod with pull secrets of its own keeps them.
    obj = pod(spec={"serviceAccountName": "robot", "imagePullSecrets": [{"name": "mine"}],
                    "containers": [{"name": "c", "image": "x"}]})
    assert (await admitted(ServiceAccountAdmission(accounts), obj))["spec"]["imagePullSecrets"] == [{"name": "mine"}]


async def test_validate_refuses_an_account_that_vanished_after_admit():
    accounts = Accounts(account("robot"))
    plugin = ServiceAccountAdmission(accounts)
    a = attrs(pod(spec={"serviceAccountName": "robot", "containers": [{"name": "c", "image": "x"}]}))
    await plugin.admit(a)
    accounts.accounts.clear()
    with pytest.raises(errors.Forbidden, match="error looking up service account ns/robot"):
        await plugin.validate(a)


async def test_validate_refuses_a_pod_without_an_account():
    a = attrs(pod(spec={"containers": [{"name": "c", "image": "x"}]}))
    with pytest.raises(errors.Forbidden, match=r'^pods "p" is forbidden: no service account specified for pod ns/p$'):
        await ServiceAccountAdmission(Accounts(account())).validate(a)


async def test_enforced_mountable_secrets():
    sa = account("robot", secrets=[{"name": "ok"}],
                 metadata={"name": "robot", "namespace": "ns",
                           "annotations": {"kubernetes.io/enforce-mountable-secrets": "true"}})
    plugin = ServiceAccountAdmission(Accounts(sa))
    good = pod(spec={"serviceAccountName": "robot", "containers": [{"name": "c", "image": "x"}],
                     "volumes": [{"name": "v", "secret": {"secretName": "ok"}}]})
    await admitted(plugin, good)
    bad = pod(spec={"serviceAccountName": "robot", "containers": [{"name": "c", "image": "x", "env": [
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}]}]})
    with pytest.raises(errors.Forbidden, match=r'container c with envVar PW referencing secret.secretName="other" '
                                               r"is not allowed because service account robot does not reference"):
        await admitted(plugin, bad)


async def test_mirror_pods_are_not_mutated_and_may_not_use_accounts():
    plugin = ServiceAccountAdmission(Accounts(account()))
    mirror = {"kubernetes.io/config.mirror": "abc"}
    plain = pod(annotations=mirror)
    out = await admitted(plugin, copy.deepcopy(plain))
    assert out == plain
    for spec, message in [
        ({"serviceAccountName": "default", "containers": [{"name": "c", "image": "x"}]},
         "a mirror pod may not reference service accounts"),
        ({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "s", "secret": {"secretName": "s"}}]},
         "a mirror pod may not reference secrets"),
        ({"containers": [{"name": "c", "image": "x", "envFrom": [{"secretRef": {"name": "s"}}]}]},
         "a mirror pod may not reference secrets"),
        ({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "t", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}}]}}]},
         "a mirror pod may not use ServiceAccountToken volume projections"),
    ]:
        with pytest.raises(errors.Forbidden, match=f'^pods "p" is forbidden: {message}$'):
            await admitted(plugin, pod(spec=spec, annotations=mirror))


async def test_a_pod_in_a_missing_or_terminating_namespace_is_left_to_the_namespace_check():
    accounts = Accounts(account(), namespaces=())
    a = attrs(pod())
    await ServiceAccountAdmission(accounts).admit(a)
    assert accounts.asked == []  # not looked up (nor waited for): the store answers NotFound / Forbidden
    assert "volumes" not in a.obj["spec"]


def test_only_pod_creates_are_handled():
    plugin = ServiceAccountAdmission(Accounts())
    assert plugin.handles(attrs(pod()))
    assert not plugin.handles(attrs(pod(), operation=UPDATE))
    assert not plugin.handles(attrs(pod(), subresource="status"))
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}}
    assert not plugin.handles(attrs(cm, info=CONFIGMAPS))
