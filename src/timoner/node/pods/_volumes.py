"""`VolumeManager`: a pod's volumes on this node, made and kept up to date as the kubelet's volume manager does.

Each volume lives in `<root_dir>/pods/<uid>/volumes/<plugin>/<name>`, with
upstream's plugin directory names (`kubernetes.io~empty-dir`,
`~configmap`, `~secret`, `~downward-api`, `~projected`); a `hostPath`
volume is its host path. The sources served:

- `emptyDir`: a directory, mode 0777 as upstream. `medium: Memory` is a
  tmpfs when the manager may mount (the agent runs as root), sized by
  `sizeLimit`, else by the node's allocatable memory; a plain directory
  otherwise. A disk `sizeLimit` is not enforced (upstream evicts the pod
  that passes it; this node has no eviction yet).
- `configMap`, `secret`, `downwardAPI` and `projected` (configMap, secret,
  downwardAPI and serviceAccountToken sources): files written by the
  AtomicWriter (`_atomic`) with upstream's payload rules and messages:
  `items` (key -> path, per-item `mode`), `defaultMode`, `optional` (a
  missing optional ConfigMap or Secret is an empty volume, a missing
  optional key is left out). As upstream, secret, downwardAPI and projected
  volumes sit on a tmpfs when the manager may mount, so secrets never
  reach the disk, and all four are always mounted read-only.
- `hostPath`: upstream's `type` checks (`Directory`, `DirectoryOrCreate`,
  `File`, `FileOrCreate`, `Socket`, `CharDevice`, `BlockDevice`).

- `persistentVolumeClaim`: the claim must be Bound; its volume's
  `hostPath` (with its `type` checks) or `local` path is what the
  containers mount, as kubelet mounts such volumes in place, read-only
  when the pod's volume says `readOnly`. A claim that is missing or not
  yet bound keeps the pod waiting (`error processing PVC ns/name: PVC is
  not bound`), as kubelet's volume manager does.

Any other source (nfs, ephemeral, ...) fails to mount.

`setup(pod)` makes or refreshes every volume of a pod, recording each
failure as a Warning `FailedMount` event on the pod in upstream's words
(`MountVolume.SetUp failed for volume "config" : configmap "app" not
found`). The pod worker starts no container before every volume is set
up, so the pod stays ContainerCreating while it retries, and calls `setup`
again while the pod runs, so that file contents follow their sources.
Service account tokens come from the TokenRequest subresource (bound to
the pod) and are renewed at 80% of their life; against an API server that
does not serve it (405) the token file is left out and the agent logs why.

`mounts(pod, container, env=...)` turns a container's volumeMounts into
runtime `Mount`s as kubelet's `makeMounts` does: a `subPath` (or
`subPathExpr`, expanded against the container's env) that does not exist
is made with the volume directory's mode, and one that leads out of the
volume, through symlinks or `..`, is refused; failures are
`ContainerConfigError`s.

`teardown(uid)` unmounts a pod's tmpfs volumes and removes its `volumes`
directory (and the pod's, when nothing else is left in it), once its
containers are gone; `pods_on_disk()` lists the pods that have volumes.
The same, without a manager: `remove_pod_volumes` and `pods_with_volumes`
(what `timoner up` uses to leave no mount behind when it stops).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import datetime as dt
import errno
import logging
import math
import os
import re
import shutil
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timoner.api.errors import APIError, MethodNotAllowed, NotFound
from timoner.api.quantity import parse_quantity
from timoner.client import Client, EventRecorder, resource_for

from ..runtime import Mount
from ._atomic import FileProjection, PayloadError, write_payload
from ._env import ContainerConfigError, PodNetwork, _field_value, _resource_value, expand

__all__ = [
    "PLUGIN_DIRS",
    "READ_ONLY_KINDS",
    "MountFailure",
    "VolumeError",
    "VolumeManager",
    "pods_with_volumes",
    "remove_pod_volumes",
    "volume_kind",
]

log = logging.getLogger("timoner.node.volumes")

CONFIGMAPS = resource_for("v1", "ConfigMap")
SECRETS = resource_for("v1", "Secret")
SERVICEACCOUNTS = resource_for("v1", "ServiceAccount")
PERSISTENT_VOLUME_CLAIMS = resource_for("v1", "PersistentVolumeClaim")
PERSISTENT_VOLUMES = resource_for("v1", "PersistentVolume")

PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}
READ_ONLY_KINDS = frozenset({"configMap", "secret", "downwardAPI", "projected"})  # upstream mounts these read-only
_ON_TMPFS = frozenset({"secret", "downwardAPI", "projected"})  # wrapped in a Memory emptyDir upstream
_TOKEN_REFRESH = 0.8  # of a token's life, as kubelet's token manager
_TOKEN_MAX_AGE = 24 * 3600.0
_MNT_DETACH = 2
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

Obj = dict[str, Any]


class VolumeError(Exception):
    """A volume could not be set up; the message is what follows `MountVolume.SetUp failed for volume "x" : `."""


@dataclass(frozen=True, slots=True)
class MountFailure:
    """One volume of a pod that `setup` could not make, and why."""

    volume: str
    message: str


@dataclass(frozen=True, slots=True)
class _Token:
    token: str
    refresh_at: float
    expires_at: float


def volume_kind(volume: Mapping[str, Any]) -> str:
    """The source field a volume sets (`configMap`, `emptyDir`, ...)."""
    return next((key for key, value in volume.items() if key != "name" and value is not None), "")


def _aggregate(messages: list[str]) -> str:
    """Go's `utilerrors.NewAggregate(...).Error()`."""
    return messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"


# -- host mounts (tmpfs) ---------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _call(name: str, *args: Any) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if getattr(_libc, name)(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _mount_tmpfs(path: Path, size: int | None) -> None:
    if os.path.ismount(path):
        return  # made by this agent before a restart
    options = f"size={size}" if size else None
    try:
        _call("mount", b"tmpfs", str(path).encode(), b"tmpfs", 0, options.encode() if options else None)
    except OSError as error:
        raise VolumeError(f"mount tmpfs on {path}: {error.strerror}") from None


def _mount_points_under(directory: Path) -> list[str]:
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(prefix):
                found.append(point)
    return found


def _unmount(point: str) -> None:
    try:
        _call("umount2", point.encode(), 0)
    except OSError as error:
        if error.errno != errno.EBUSY:
            raise
        _call("umount2", point.encode(), _MNT_DETACH)  # busy: detach now, the kernel frees it when unused


def pods_with_volumes(root_dir: Path) -> list[str]:
    """The uids of the pods that have volumes under an agent's `root_dir`."""
    try:
        entries = list(os.scandir(Path(root_dir) / "pods"))
    except FileNotFoundError:
        return []
    return sorted(entry.name for entry in entries if os.path.isdir(os.path.join(entry.path, "volumes")))


def remove_pod_volumes(pod_dir: Path) -> None:
    """Unmount what is mounted under `pod_dir/volumes`, then remove it (and `pod_dir`, if left empty); blocking.

    Anything still mounted after that is kept, and said in the log: removing it would reach into a live mount.
    """
    volumes = Path(pod_dir) / "volumes"
    if not volumes.exists():
        return
    for point in sorted(_mount_points_under(volumes), key=len, reverse=True):
        try:
            _unmount(point)
        except OSError as error:
            log.warning("cannot unmount %s: %s", point, error.strerror)
    left = _mount_points_under(volumes)
    if left:
        log.warning("keeping %s: still mounted at %s", volumes, ", ".join(left))
        return
    shutil.rmtree(volumes, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path(pod_dir).rmdir()  # unless something else keeps files there


# -- payloads ----------------------------------------------------------------------------------------

def _keyed_payload(kind: str, data: Mapping[str, bytes], items: list[Obj], default_mode: int,
                   *, optional: bool) -> dict[str, FileProjection]:
    """Upstream's `MakePayload` of the configMap and secret plugins."""
    if not items:
        return {key: FileProjection(value, default_mode) for key, value in data.items()}
    payload = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            if kind == "configmap":
                raise VolumeError(f"configmap references non-existent config key: {key}")
            raise VolumeError(f"references non-existent secret key: {key}")
        mode = item.get("mode")
        payload[item.get("path", "")] = FileProjection(data[key], default_mode if mode is None else mode)
    return payload


def _object_data(kind: str, obj: Obj) -> dict[str, bytes]:
    if kind == "secret":
        return {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
    data = {key: value.encode() for key, value in (obj.get("data") or {}).items()}
    data.update({key: base64.b64decode(value) for key, value in (obj.get("binaryData") or {}).items()})
    return data


def _downward_payload(pod: Obj, items: list[Obj], default_mode: int, network: PodNetwork) -> dict[str, FileProjection]:
    """Upstream's downwardAPI `CollectData`: one file per item, errors gathered."""
    spec = pod.get("spec") or {}
    containers = {c.get("name"): c for c in list(spec.get("initContainers") or ()) + list(spec.get("containers") or ())}
    payload, errors = {}, []
    for item in items:
        mode = item.get("mode")
        try:
            if item.get("fieldRef"):
                value = _field_value(pod, item["fieldRef"].get("fieldPath", ""), network)
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                container = containers.get(ref.get("containerName", ""))
                if container is None:
                    raise ContainerConfigError(f"container {ref.get('containerName', '')} not found")
                value = _resource_value(ref, container, network)
            else:
                value = ""
        except (ContainerConfigError, ValueError) as error:
            errors.append(str(error))
            continue
        payload[item.get("path", "")] = FileProjection(value.encode(), default_mode if mode is None else mode)
    if errors:
        raise VolumeError(_aggregate(errors))
    return payload


# -- hostPath and subPath ------------------------------------------------------------------------------

_TYPE_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "FileOrCreate": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _check_host_path(path: str, kind: str) -> None:
    """Upstream's hostPath `checkType`: make what `...OrCreate` asks for, then check what is there."""
    if not kind:
        return
    if kind not in _TYPE_CHECKS:
        raise VolumeError(f"hostPath type check failed: unknown type {kind} for {path}")
    try:
        if kind == "DirectoryOrCreate" and not os.path.exists(path):
            os.makedirs(path, 0o755)
        elif kind == "FileOrCreate" and not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    except OSError as error:
        raise VolumeError(f"hostPath type check failed: cannot create {path}: {error.strerror}") from None
    check, what = _TYPE_CHECKS[kind]
    try:
        ok = check(os.stat(path).st_mode)
    except OSError:
        ok = False
    if not ok:
        raise VolumeError(f"hostPath type check failed: {path} is not {what}")


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _resolve_sub_path(volume_path: str, sub_path: str, *, mount: str, container: str) -> str:
    """The host path a subPath names, made (as a directory, with the volume's mode) when missing."""
    if sub_path.startswith("/"):
        raise ContainerConfigError(f"error SubPath `{sub_path}` must not be an absolute path")
    if ".." in sub_path.split("/"):
        raise ContainerConfigError(f"unable to provision SubPath `{sub_path}`: must not contain '..'")
    base = os.path.realpath(volume_path)
    path = os.path.join(volume_path, sub_path)
    refused = ContainerConfigError(f'failed to prepare subPath for volumeMount "{mount}" of container "{container}"')
    if not os.path.lexists(path):
        existing = path
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        if not _within(os.path.realpath(existing), base):
            raise refused  # a symlink in the volume leads out of it: making directories there would write outside
        try:
            mode = stat.S_IMODE(os.stat(volume_path).st_mode)
            os.makedirs(path, mode)
            os.chmod(path, mode)
        except OSError:
            raise ContainerConfigError(f'failed to create subPath directory for volumeMount "{mount}" '
                                       f'of container "{container}"') from None
    real = os.path.realpath(path)
    if not _within(real, base) or not os.path.exists(real):
        raise refused
    return real


# -- the manager ---------------------------------------------------------------------------------------

class VolumeManager:
    """The volumes of the pods on one node; see the module docstring.

    `mount_tmpfs` says whether tmpfs may be mounted on the host (None: when
    running as root); without it Memory volumes are plain directories.
    """

    def __init__(self, client: Client, root_dir: Path, *, network: PodNetwork, recorder: EventRecorder | None = None,
                 mount_tmpfs: bool | None = None) -> None:
        self.client = client
        self.root_dir = Path(root_dir)
        self.network = network
        self.recorder = recorder
        self.mount_tmpfs = os.geteuid() == 0 if mount_tmpfs is None else mount_tmpfs
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._claim_paths: dict[tuple[str, str], str] = {}  # (pod uid, volume) -> the bound volume's host path
        self._told_unsupported: set[tuple[str, str, str]] = set()

    def pod_dir(self, uid: str) -> Path:
        return self.root_dir / "pods" / uid

    def volume_dir(self, uid: str, kind: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / PLUGIN_DIRS[kind] / name

    # -- setup ------------------------------------------------------------------------------------

    async def setup(self, pod: Obj) -> list[MountFailure]:
        """Make or refresh every volume of `pod`; each failure is also a `FailedMount` event on it."""
        failures = []
        for volume in (pod.get("spec") or {}).get("volumes") or ():
            name = volume.get("name", "")
            try:
                await self._setup(pod, volume)
                continue
            except (VolumeError, PayloadError) as error:
                message = str(error)
            except OSError as error:
                message = f"{error.filename}: {error.strerror}" if error.filename else str(error)
            failures.append(MountFailure(name, message))
            meta = pod.get("metadata") or {}
            log.info("pod %s/%s: volume %s: %s", meta.get("namespace"), meta.get("name"), name, message)
            if self.recorder is not None:
                await self.recorder.event(pod, "Warning", "FailedMount",
                                          f'MountVolume.SetUp failed for volume "{name}" : {message}',
                                          kind="Pod", api_version="v1")
        return failures

    async def _setup(self, pod: Obj, volume: Obj) -> None:
        kind = volume_kind(volume)
        source = volume.get(kind) or {}
        if kind == "hostPath":
            await asyncio.to_thread(_check_host_path, source.get("path", ""), source.get("type") or "")
            return
        if kind == "persistentVolumeClaim":
            path = await self._claim_path(pod, source.get("claimName", ""))
            self._claim_paths[(pod["metadata"]["uid"], volume.get("name", ""))] = path
            return
        if kind not in PLUGIN_DIRS:
            raise VolumeError(f"no volume plugin matched: this node agent does not serve {kind or 'empty'} volumes")
        path = self.volume_dir(pod["metadata"]["uid"], kind, volume.get("name", ""))
        if kind == "emptyDir":
            await asyncio.to_thread(self._empty_dir, path, source)
            return
        payload = await self._payload(pod, volume.get("name", ""), kind, source)
        if await asyncio.to_thread(self._write, path, kind, payload):
            meta = pod["metadata"]
            log.debug("pod %s/%s: volume %s updated", meta.get("namespace"), meta.get("name"), volume.get("name"))

    def _empty_dir(self, path: Path, source: Obj) -> None:
        medium = source.get("medium") or ""
        if medium not in ("", "Memory"):
            raise VolumeError(f"emptyDir medium {medium} is not supported by this node agent")
        path.mkdir(parents=True, exist_ok=True)
        if medium == "Memory" and self.mount_tmpfs:
            limit = source.get("sizeLimit") or self.network.allocatable.get("memory")
            _mount_tmpfs(path, math.ceil(parse_quantity(limit)) if limit else None)
        else:
            os.chmod(path, 0o777)

    def _write(self, path: Path, kind: str, payload: Mapping[str, FileProjection]) -> bool:
        if not path.exists():
            path.mkdir(parents=True)
            os.chmod(path, 0o777)
        if kind in _ON_TMPFS and self.mount_tmpfs:
            _mount_tmpfs(path, None)
        return write_payload(path, payload)

    async def _claim_path(self, pod: Obj, claim_name: str) -> str:
        """The host path of the volume bound to the claim; upstream's messages when there is none yet."""
        namespace = pod["metadata"].get("namespace", "")
        what = f"error processing PVC {namespace}/{claim_name}"
        try:
            claim = await self.client.get(PERSISTENT_VOLUME_CLAIMS, claim_name, namespace=namespace)
        except APIError as error:
            raise VolumeError(f"{what}: failed to fetch PVC from API server: {error}") from None
        if claim["metadata"].get("deletionTimestamp"):
            raise VolumeError(f"{what}: can't start pod because PVC is being deleted")
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name or (claim.get("status") or {}).get("phase") != "Bound":
            raise VolumeError(f"{what}: PVC is not bound")
        try:
            volume = await self.client.get(PERSISTENT_VOLUMES, volume_name)
        except APIError as error:
            raise VolumeError(f"{what}: failed to fetch PV {volume_name} from API server: {error}") from None
        spec = volume.get("spec") or {}
        ref_uid = (spec.get("claimRef") or {}).get("uid")
        if ref_uid != claim["metadata"].get("uid"):
            raise VolumeError(f"{what}: found PV object {volume_name} but its ClaimRef UID is {ref_uid or ''}, "
                              f"expected {claim['metadata'].get('uid')}")
        if spec.get("hostPath"):
            path = spec["hostPath"].get("path", "")
            await asyncio.to_thread(_check_host_path, path, spec["hostPath"].get("type") or "")
            return path
        if spec.get("local"):
            path = spec["local"].get("path", "")
            if not await asyncio.to_thread(os.path.exists, path):
                raise VolumeError(f'path "{path}" does not exist')
            return path
        source = next((key for key, value in spec.items() if isinstance(value, dict) and key not in (
            "capacity", "claimRef", "nodeAffinity")), "")
        raise VolumeError(f"no volume plugin matched: this node agent does not serve {source or 'empty'} volumes "
                          f"(persistent volume {volume_name})")

    async def _payload(self, pod: Obj, name: str, kind: str, source: Obj) -> dict[str, FileProjection]:
        namespace = pod["metadata"].get("namespace", "")
        default_mode = source.get("defaultMode", 0o644)
        if kind in ("configMap", "secret"):
            plugin = kind.lower()
            obj_name = source.get("name" if kind == "configMap" else "secretName", "")
            optional = bool(source.get("optional"))
            obj = await self._object(plugin, namespace, obj_name, optional=optional)
            if obj is None:
                return {}
            return _keyed_payload(plugin, _object_data(plugin, obj), list(source.get("items") or ()), default_mode,
                                  optional=optional)
        if kind == "downwardAPI":
            return _downward_payload(pod, list(source.get("items") or ()), default_mode, self.network)
        return await self._projected(pod, name, source, default_mode)

    async def _projected(self, pod: Obj, name: str, source: Obj, default_mode: int) -> dict[str, FileProjection]:
        """Upstream's projected `collectData`: every source in order, errors gathered."""
        namespace = pod["metadata"].get("namespace", "")
        payload: dict[str, FileProjection] = {}
        errors: list[str] = []
        for projection in source.get("sources") or ():
            try:
                for plugin, field, ref_name in (("configmap", "configMap", "name"), ("secret", "secret", "name")):
                    ref = projection.get(field)
                    if ref is None:
                        continue
                    optional = bool(ref.get("optional"))
                    obj = await self._object(plugin, namespace, ref.get(ref_name, ""), optional=optional)
                    if obj is not None:
                        payload.update(_keyed_payload(plugin, _object_data(plugin, obj), list(ref.get("items") or ()),
                                                      default_mode, optional=optional))
                if projection.get("downwardAPI") is not None:
                    items = list(projection["downwardAPI"].get("items") or ())
                    payload.update(_downward_payload(pod, items, default_mode, self.network))
                if (token_source := projection.get("serviceAccountToken")) is not None:
                    token = await self._token(pod, name, token_source)
                    if token is not None:
                        payload[token_source.get("path", "")] = FileProjection(token.encode(), default_mode)
                if projection.get("clusterTrustBundle") is not None:
                    raise VolumeError("clusterTrustBundle projections are not supported by this node agent")
            except VolumeError as error:
                errors.append(str(error))
        if errors:
            raise VolumeError(_aggregate(errors))
        return payload

    async def _object(self, plugin: str, namespace: str, name: str, *, optional: bool) -> Obj | None:
        try:
            return await self.client.get(CONFIGMAPS if plugin == "configmap" else SECRETS, name, namespace=namespace)
        except NotFound:
            if optional:
                return None
            raise VolumeError(f'{plugin} "{name}" not found') from None
        except APIError as error:
            raise VolumeError(f"couldn't get {plugin} {namespace}/{name}: {error}") from None

    async def _token(self, pod: Obj, volume: str, source: Obj) -> str | None:
        """A token for the pod's service account, bound to the pod; reused until 80% of its life is over."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        key = (meta["uid"], volume, source.get("path", ""))
        now = time.time()
        cached = self._tokens.get(key)
        if cached is not None and now < cached.refresh_at:
            return cached.token
        seconds = int(source.get("expirationSeconds") or 3600)
        request: Obj = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "audiences": [source["audience"]] if source.get("audience") else [],
            "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"), "uid": meta["uid"]}}}
        account = spec.get("serviceAccountName") or "default"
        path = SERVICEACCOUNTS.path(namespace=meta.get("namespace"), name=account, subresource="token")
        try:
            answer = await self.client.request("POST", path, body=request)
        except MethodNotAllowed:
            if key not in self._told_unsupported:
                self._told_unsupported.add(key)
                log.warning("pod %s/%s: volume %s: the API server does not serve serviceaccounts/token "
                            "(TokenRequest); %s is left out of the volume", meta.get("namespace"), meta.get("name"),
                            volume, source.get("path", ""))
            return None
        except APIError as error:
            if cached is not None and now < cached.expires_at:
                return cached.token  # still valid: try again at the next sync
            raise VolumeError(f'failed to fetch token: {error}') from None
        status = (answer or {}).get("status") or {}
        expires = now + seconds
        if status.get("expirationTimestamp"):
            with contextlib.suppress(ValueError):
                expires = dt.datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00")).timestamp()
        life = max(0.0, expires - now)
        self._tokens[key] = _Token(status.get("token", ""), now + min(life * _TOKEN_REFRESH, _TOKEN_MAX_AGE), expires)
        return self._tokens[key].token

    # -- mounts -----------------------------------------------------------------------------------

    async def mounts(self, pod: Obj, container: Obj, *, env: Mapping[str, str]) -> tuple[Mount, ...]:
        """The container's volumeMounts as runtime mounts; raises `ContainerConfigError` for one that cannot be."""
        return await asyncio.to_thread(self._mounts, pod, container, env)

    def _mounts(self, pod: Obj, container: Obj, env: Mapping[str, str]) -> tuple[Mount, ...]:
        uid = pod["metadata"]["uid"]
        volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or ()}
        cname = container.get("name", "")
        out = []
        for volume_mount in container.get("volumeMounts") or ():
            name = volume_mount.get("name", "")
            volume = volumes.get(name)
            if volume is None:
                raise ContainerConfigError(f'cannot find volume "{name}" to mount into container "{cname}"')
            kind = volume_kind(volume)
            if kind == "hostPath":
                host = (volume.get("hostPath") or {}).get("path", "")
            elif kind == "persistentVolumeClaim" and (uid, name) in self._claim_paths:
                host = self._claim_paths[(uid, name)]
            elif kind in PLUGIN_DIRS:
                host = str(self.volume_dir(uid, kind, name))
            else:
                raise ContainerConfigError(f'volume "{name}" of kind {kind} cannot be mounted on this node')
            sub_path = volume_mount.get("subPath") or ""
            if volume_mount.get("subPathExpr"):
                sub_path = expand(volume_mount["subPathExpr"], env.get)
            if sub_path:
                host = _resolve_sub_path(host, sub_path, mount=name, container=cname)
            read_only = (bool(volume_mount.get("readOnly")) or kind in READ_ONLY_KINDS
                         or bool((volume.get("persistentVolumeClaim") or {}).get("readOnly")))
            out.append(Mount(host_path=host, container_path=volume_mount.get("mountPath", ""), read_only=read_only,
                             sub_path=sub_path))
        return tuple(out)

    # -- teardown ---------------------------------------------------------------------------------

    def pods_on_disk(self) -> list[str]:
        """The uids of the pods that have volumes here."""
        return pods_with_volumes(self.root_dir)

    async def teardown(self, uid: str) -> None:
        """Unmount and remove the pod's volumes (its containers must be gone); keeps what cannot be unmounted."""
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
        for key in [k for k in self._claim_paths if k[0] == uid]:
            del self._claim_paths[key]
        self._told_unsupported = {k for k in self._told_unsupported if k[0] != uid}
        await asyncio.to_thread(remove_pod_volumes, self.pod_dir(uid))
