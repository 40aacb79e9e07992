"""The ServiceAccount admission plugin (upstream's plugin/pkg/admission/serviceaccount).

On a pod CREATE, the mutating phase:

- sets `spec.serviceAccountName` to `default` when it is empty;
- looks the ServiceAccount up and refuses the pod (403) when it does not
  exist. The `default` account is made asynchronously for every new
  namespace, so a lookup of it that misses is retried for a while, as
  upstream retries it ten times;
- unless `automountServiceAccountToken` is false (the pod's setting wins,
  then the account's), mounts the projected `kube-api-access-<5 chars>`
  volume (a bound token, the `kube-root-ca.crt` ConfigMap's `ca.crt` and
  the namespace) read-only at `/var/run/secrets/kubernetes.io/serviceaccount`
  in every init container and container that mounts nothing there yet
  (ephemeral containers are left alone, as upstream);
- copies the account's `imagePullSecrets` to a pod that has none.

The validating phase refuses a pod without an account, a pod whose
non-default account vanished meanwhile, and, for an account annotated
`kubernetes.io/enforce-mountable-secrets: "true"`, secrets the account does
not list. Mirror pods (annotation `kubernetes.io/config.mirror`) are not
mutated; they may not name an account, reference secrets, or project
service-account tokens. Updates are not this plugin's business
(`serviceAccountName` is immutable by validation).
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any, Protocol

from timoner.api import errors

from ._attributes import CREATE, Attributes

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["DEFAULT_API_TOKEN_MOUNT_PATH", "ServiceAccountAdmission", "ServiceAccountGetter", "token_volume_source"]

DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_API_TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
ENFORCE_MOUNTABLE_SECRETS = "kubernetes.io/enforce-mountable-secrets"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
_WARN_ONLY_TOKEN_SECONDS = 3607
# names.SimpleNameGenerator's alphabet: no vowels (no words), no 0/1/3 (look like letters)
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


class ServiceAccountGetter(Protocol):
    """Where the plugin finds ServiceAccounts, and whether their namespace takes new pods at all."""

    async def service_account(self, namespace: str, name: str) -> dict | None: ...

    async def namespace_active(self, namespace: str) -> bool: ...


class _StoreServiceAccounts:
    """ServiceAccounts from the watch cache; a missing `default` is waited for (upstream's 10 retries)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def service_account(self, namespace: str, name: str) -> dict | None:
        key = f"/registry/core/serviceaccounts/{namespace}/{name}"
        attempts = 10 if name == DEFAULT_SERVICE_ACCOUNT else 1
        interval = random.uniform(0.1, 0.2)
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(interval)
            await self.store.sync()
            cached = self.store.cache.get(key)
            if cached is not None:
                return cached.obj
        return None

    async def namespace_active(self, namespace: str) -> bool:
        await self.store.sync()
        cached = self.store.cache.get(f"/registry/core/namespaces/{namespace}")
        return cached is not None and not cached.obj["metadata"].get("deletionTimestamp")


def token_volume_source() -> dict[str, Any]:
    """The projected source of `kube-api-access-*` volumes (upstream's TokenVolumeSource)."""
    return {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": _WARN_ONLY_TOKEN_SECONDS, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    }


def _generate_name(prefix: str) -> str:
    return prefix + "".join(random.choice(_ALPHANUMS) for _ in range(5))


class ServiceAccountAdmission:
    """The ServiceAccount admission plugin (mutating and validating); see the module docstring."""

    name = "ServiceAccount"

    def __init__(self, accounts: ServiceAccountGetter) -> None:
        self.accounts = accounts

    @classmethod
    def for_store(cls, store: Store) -> ServiceAccountAdmission:
        return cls(_StoreServiceAccounts(store))

    def handles(self, attrs: Attributes) -> bool:
        return (attrs.operation == CREATE and not attrs.subresource and not attrs.info.group
                and attrs.info.plural == "pods" and isinstance(attrs.obj, dict))

    async def admit(self, attrs: Attributes) -> None:
        pod = attrs.obj
        assert pod is not None
        if _is_mirror(pod):
            return  # never mutated: the kubelet would delete a mirror pod whose spec changed
        spec = pod.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = DEFAULT_SERVICE_ACCOUNT
        if not await self.accounts.namespace_active(attrs.namespace or ""):
            # Upstream's NamespaceLifecycle plugin, first in the chain, refuses this pod before we run; here
            # the store's namespace check does, with its NotFound or NamespaceTerminating answer.
            return
        account = await self._lookup(attrs, spec["serviceAccountName"])
        if _should_automount(account, pod):
            _mount_token(pod)
        if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in account["imagePullSecrets"]]

    async def validate(self, attrs: Attributes) -> None:
        pod = attrs.obj
        assert pod is not None
        spec = pod.get("spec") or {}
        if _is_mirror(pod):
            if spec.get("serviceAccountName"):
                raise _forbidden(attrs, "a mirror pod may not reference service accounts")
            if _secret_names(pod):
                raise _forbidden(attrs, "a mirror pod may not reference secrets")
            for volume in spec.get("volumes") or []:
                for source in (volume.get("projected") or {}).get("sources") or []:
                    if source.get("serviceAccountToken") is not None:
                        raise _forbidden(attrs, "a mirror pod may not use ServiceAccountToken volume projections")
            return
        name = spec.get("serviceAccountName")
        if not name:
            raise _forbidden(attrs, "no service account specified for pod "
                                    f"{attrs.namespace}/{(pod.get('metadata') or {}).get('name', '')}")
        if name == DEFAULT_SERVICE_ACCOUNT:
            return  # pods using the default account get a pass
        account = await self._lookup(attrs, name)
        if str((account.get("metadata") or {}).get("annotations", {}).get(ENFORCE_MOUNTABLE_SECRETS, "")).lower() \
                == "true":
            problem = _unlisted_secret(account, pod)
            if problem:
                raise _forbidden(attrs, problem)

    async def _lookup(self, attrs: Attributes, name: str) -> dict:
        account = await self.accounts.service_account(attrs.namespace or "", name)
        if account is None:
            raise _forbidden(attrs, f"error looking up service account {attrs.namespace}/{name}: "
                                    f'serviceaccount "{name}" not found')
        return account


def _is_mirror(pod: dict) -> bool:
    return MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def _pod_name(attrs: Attributes) -> str:
    """admission.NewForbidden's name: the object's name, else its generateName, else "Unknown"."""
    meta = (attrs.obj or {}).get("metadata") or {}
    return meta.get("name") or meta.get("generateName") or attrs.name or "Unknown"


def _forbidden(attrs: Attributes, detail: str) -> errors.Forbidden:
    name = _pod_name(attrs)
    return errors.Forbidden(f'pods "{name}" is forbidden: {detail}', resource="pods", name=name)


def _should_automount(account: dict, pod: dict) -> bool:
    pod_says = (pod.get("spec") or {}).get("automountServiceAccountToken")
    if pod_says is not None:
        return bool(pod_says)
    account_says = account.get("automountServiceAccountToken")
    if account_says is not None:
        return bool(account_says)
    return True


def _mount_token(pod: dict) -> None:
    spec = pod.setdefault("spec", {})
    volumes = spec.get("volumes") or []
    # As upstream: a volume already named kube-api-access-* is taken to be the token volume.
    existing = next((v.get("name") for v in volumes if str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
    volume_name = existing or _generate_name(VOLUME_PREFIX)
    needs_volume = False
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            mounts = container.get("volumeMounts") or []
            if any(m.get("mountPath") == DEFAULT_API_TOKEN_MOUNT_PATH for m in mounts):
                continue  # an existing mount at the path prevents mounting the token
            container["volumeMounts"] = [*mounts, {
                "name": volume_name, "readOnly": True, "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}]
            needs_volume = True
    if existing is None and needs_volume:
        spec["volumes"] = [*volumes, {"name": volume_name, "projected": token_volume_source()}]


def _containers(spec: dict) -> list[tuple[str, dict]]:
    return [(field, c) for field in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(field) or []]


# Volume sources that reference a secret, and where its name is (podutil.VisitPodSecretNames).
_VOLUME_SECRET_REFS: tuple[tuple[str, str], ...] = (
    ("azureFile", "secretName"), ("cephfs", "secretRef"), ("cinder", "secretRef"), ("flexVolume", "secretRef"),
    ("rbd", "secretRef"), ("secret", "secretName"), ("scaleIO", "secretRef"), ("iscsi", "secretRef"),
    ("storageos", "secretRef"), ("csi", "nodePublishSecretRef"),
)


def _secret_names(pod: dict) -> list[str]:
    """Every secret a pod references: pull secrets, env, envFrom and volumes (projected ones included)."""
    spec = pod.get("spec") or {}
    names = [s.get("name", "") for s in spec.get("imagePullSecrets") or []]
    for _, container in _containers(spec):
        names += [e["secretRef"].get("name", "") for e in container.get("envFrom") or [] if e.get("secretRef")]
        names += [e["valueFrom"]["secretKeyRef"].get("name", "") for e in container.get("env") or []
                  if (e.get("valueFrom") or {}).get("secretKeyRef")]
    for volume in spec.get("volumes") or []:
        for source, key in _VOLUME_SECRET_REFS:
            ref = (volume.get(source) or {}).get(key)
            if ref:
                names.append(ref if isinstance(ref, str) else ref.get("name", ""))
        for projection in (volume.get("projected") or {}).get("sources") or []:
            if projection.get("secret"):
                names.append(projection["secret"].get("name", ""))
    return [n for n in names if n]


def _unlisted_secret(account: dict, pod: dict) -> str | None:
    """upstream's limitSecretReferences: the first secret reference the account does not allow, described."""
    account_name = (account.get("metadata") or {}).get("name", "")
    mountable = {s.get("name") for s in account.get("secrets") or []}
    spec = pod.get("spec") or {}
    for volume in spec.get("volumes") or []:
        secret_name = (volume.get("secret") or {}).get("secretName")
        if volume.get("secret") is not None and secret_name not in mountable:
            return (f'volume with secret.secretName="{secret_name}" is not allowed because service account '
                    f"{account_name} does not reference that secret")
    for field, what in (("initContainers", "init container"), ("containers", "container")):
        for container in spec.get(field) or []:
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref.get("name") not in mountable:
                    return (f'{what} {container.get("name")} with envVar {env.get("name")} referencing '
                            f'secret.secretName="{ref.get("name")}" is not allowed because service account '
                            f"{account_name} does not reference that secret")
    pull = {s.get("name") for s in account.get("imagePullSecrets") or []}
    for i, ref in enumerate(spec.get("imagePullSecrets") or []):
        if ref.get("name") not in pull:
            return (f'imagePullSecrets[{i}].name="{ref.get("name")}" is not allowed because service account '
                    f"{account_name} does not reference that imagePullSecret")
    return None
