"""`PodWorker`: drives one pod bound to this node to its spec through a `Runtime`, and reports its status.

One worker per pod uid, as the kubelet's pod workers. Each pass of the loop
(`_sync`) is level-triggered: it looks at the latest pod object and what
the runtime said about each container, does the next thing, writes status
when it changed, and sleeps until the pod changes, a container exits, or a
timer (back-off, retry, active deadline) is due.

- Init containers run one at a time, in order; each must exit 0 before the
  next starts. A failed one is restarted (with back-off) unless the policy
  is `Never`, which fails the pod. Once an app container has started, init
  containers are not looked at again.
- App containers all start once initialised; an exited one restarts per
  `restartPolicy` behind a CrashLoopBackOff (`Backoff`).
- A container that cannot start stays `waiting` with the error's `reason`
  (`CreateContainerConfigError`, or the runtime's, default
  `CreateContainerError`) and is retried every `retry_interval`.
- Succeeded and Failed are final: the worker then only waits for deletion.
- `activeDeadlineSeconds` past `startTime` stops the containers and fails
  the pod with reason `DeadlineExceeded`.
- Probes (a `ContainerProber` per running container, from `_lifecycle`): a
  container is `started` once its startup probe succeeded and `ready` once
  its readiness probe did (at once without them), which makes the pod's
  ContainersReady and Ready conditions. A container that fails its startup
  or liveness probe is killed (Normal `Killing` "Container c failed
  liveness probe, will be restarted", with the probe's
  `terminationGracePeriodSeconds` if set) and restarts per `restartPolicy`.
- Lifecycle hooks (`ContainerLifecycle`): `postStart` runs right after
  the container starts and the worker waits for it, as the kubelet does, so
  the container shows `ContainerCreating` until it returns; if it fails
  (Warning `FailedPostStartHook`) the container is killed, shows
  `PostStartHookError`, and restarts per policy. Every kill (deletion,
  failed probe, deadline) first runs `preStop` within the grace period,
  then gives the runtime what is left of it, at least 2 s, as upstream
  (Warning `FailedPreStopHook` when it fails).
- Volumes (`VolumeManager`): no container starts before every volume of
  the pod is set up; until then the containers stay `ContainerCreating`
  and each failing volume is a Warning `FailedMount` event, retried every
  `retry_interval`. While the pod runs, volumes are set up again every
  `volume_sync_interval` (upstream's resync, about a minute) and when the
  pod's labels or annotations change, so configMap, secret, downwardAPI
  and projected files follow their sources. A final pod's volumes are torn
  down (tmpfs unmounted, directory removed) once its containers stopped,
  as are a deleted pod's.
- Deletion (`deletionTimestamp`): stop every container as above with the
  pod's grace period (Normal `Killing` "Stopping container c"), write the
  final status, then finish the delete with `gracePeriodSeconds=0` and a
  uid precondition. A pod gone from the informer (force-deleted) only has
  its containers stopped. Either way the runtime then forgets the pod
  (`Runtime.remove_pod`: the containers' records, logs and working
  directories), as kubelet's garbage collection removes a deleted pod's
  containers and logs.
- Events about containers are core/v1 Events from `kubelet`, with the
  container's `fieldPath` (`ContainerLifecycle.event`).

Cancelling the worker (the agent exiting) leaves containers running: the
next agent re-adopts them from `Runtime.recover`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from timoner.api.errors import Conflict, NotFound
from timoner.client import Client, Clock, Informer, resource_for

from ..runtime import ContainerState, Runtime, State
from ._backoff import Backoff, go_duration
from ._dns import PodEtcFiles
from ._env import PodNetwork, build_container_spec
from ._lifecycle import ContainerLifecycle
from ._network import HOST_NETWORK_CONDITION, PodNetworkPlugin, host_network
from ._probes import PROBE_FIELDS, ContainerProber
from ._services import pod_service_env
from ._status import container_status, pod_conditions, pod_phase, rfc3339, terminated_dict
from ._volumes import VolumeManager

__all__ = ["PodWorker", "PodWorkerConfig"]

log = logging.getLogger("timoner.node.pods")

PODS = resource_for("v1", "Pod")
MIN_GRACE_SECONDS = 2  # upstream's minimumGracePeriodInSeconds
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PodWorkerConfig:
    """How pod workers pace restarts: CrashLoopBackOff base and cap (upstream 10 s, 300 s) and start retries."""

    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    retry_interval: float = 10.0
    volume_sync_interval: float = 60.0  # how often a running pod's volumes are brought up to date
    # Without a pod network (the agent is not root), why pods share the host's network: shown on each pod
    # as the condition `timoner.dev/HostNetworkFallback`; "" shows nothing.
    host_network_fallback: str = ""
    # kubelet's --cluster-dns, --cluster-domain and --resolv-conf: each pod's /etc/resolv.conf (`_dns`).
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    resolv_conf: Path = Path("/etc/resolv.conf")


@dataclass(slots=True)
class _Container:
    """What the worker knows about one container name of its pod (mutable: the worker's own bookkeeping)."""

    current: ContainerState | None = None
    restart_count: int = 0
    next_attempt: int = 0
    last_terminated: Obj | None = None
    waiting: tuple[str, str] | None = None
    exited_at: float | None = None  # clock time the worker saw the current run exit
    retry_at: float | None = None
    watch: asyncio.Task[None] | None = field(default=None, repr=False)
    prober: ContainerProber | None = field(default=None, repr=False)  # of the current run, while it runs


def _should_restart(policy: str, exit_code: int | None) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


# Waiting reasons of a run that ended (rather than one that never started): its restart counts for back-off.
_CRASHED = ("CrashLoopBackOff", "PostStartHookError")


class PodWorker:
    """One pod's worker; see the module docstring. Feed it with `update` and `remove`, run it with `run`."""

    def __init__(self, client: Client, runtime: Runtime, *, pod: Obj, network: PodNetwork, clock: Clock,
                 config: PodWorkerConfig, recovered: list[ContainerState] | None = None,
                 volumes: VolumeManager | None = None, pod_network: PodNetworkPlugin | None = None,
                 services: Informer | None = None, etc_files: PodEtcFiles | None = None) -> None:
        self.client = client
        self.runtime = runtime
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self._network = network
        self._clock = clock
        self._config = config
        self._backoff = Backoff(clock, base=config.backoff_base, cap=config.backoff_cap)
        self._wake = asyncio.Event()
        self._removed = False
        self.finished = asyncio.Event()
        self._terminal: tuple[str, str, str] | None = None  # (phase, reason, message) once final
        self._last_written: Obj | None = None
        self._start_time: str = (pod.get("status") or {}).get("startTime") or rfc3339(time.time())
        self._deadline_at: float | None = None
        self._containers: dict[str, _Container] = {c["name"]: _Container() for c in self._all_specs()}
        self._volumes = volumes
        self._services = services  # the agent's Service informer: the containers' service variables
        self._etc_files = etc_files  # the pod's /etc/hosts and /etc/resolv.conf, for runtimes that mount
        # Containers a previous agent started had their volumes: they need not wait for a first setup.
        self._volumes_ready = volumes is None or bool(recovered)
        self._volumes_synced: tuple[float, Obj, Obj] | None = None  # (clock time, labels, annotations)
        self._volumes_torn_down = False
        # The pod's own network (address and namespace) comes from the plugin before its first container.
        self._pod_network = None if host_network(pod) else pod_network
        self._sandbox_ready = self._pod_network is None
        self._sandbox_error = ""
        self._sandbox_torn_down = False
        self._lifecycle = ContainerLifecycle(client, runtime, pod=lambda: self.pod,
                                             pod_ip=lambda: self._network.pod_ip, clock=clock)
        self._deleting = asyncio.Event()  # ends a postStart hook early
        self._adopt(recovered or [])

    # -- inputs ---------------------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self._deleting.set()
        self._wake.set()

    def remove(self) -> None:
        """The pod is gone from the API (force-deleted): stop its containers and finish."""
        self._removed = True
        self._deleting.set()
        self._wake.set()

    # -- setup ----------------------------------------------------------------------------

    def _all_specs(self) -> list[Obj]:
        spec = self.pod.get("spec") or {}
        return list(spec.get("initContainers") or ()) + list(spec.get("containers") or ())

    def _adopt(self, recovered: list[ContainerState]) -> None:
        """Take over containers a previous agent started: the newest run of each name is current."""
        status = self.pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            # Final already: nothing may run again, whatever the runtime still remembers.
            self._terminal = (status["phase"], status.get("reason", ""), status.get("message", ""))
        runs: dict[str, list[ContainerState]] = {}
        for state in recovered:
            runs.setdefault(state.spec.name, []).append(state)
        for name, states in runs.items():
            tracked = self._containers.get(name)
            if tracked is None:
                continue
            states.sort(key=lambda s: (s.spec.attempt, s.started_at or 0.0))
            current = states[-1]
            tracked.current = current
            tracked.restart_count = current.spec.attempt
            tracked.next_attempt = current.spec.attempt + 1
            if len(states) > 1 and states[-2].state is State.TERMINATED:
                tracked.last_terminated = terminated_dict(states[-2])
            if current.state is State.RUNNING:
                self._watch(tracked, current)
                spec = next(c for c in self._all_specs() if c["name"] == name)
                tracked.prober = self._lifecycle.prober(spec, current, on_change=self._wake.set)
            else:
                tracked.exited_at = self._clock.now()
        # Containers the status knows but the runtime lost: carry their restart count on.
        for entry in list(status.get("initContainerStatuses") or ()) + list(status.get("containerStatuses") or ()):
            tracked = self._containers.get(entry.get("name", ""))
            if tracked is not None and tracked.current is None and entry.get("containerID"):
                tracked.next_attempt = tracked.restart_count = int(entry.get("restartCount", 0)) + 1
                tracked.last_terminated = (entry.get("lastState") or {}).get("terminated")

    def _watch(self, tracked: _Container, state: ContainerState) -> None:
        tracked.watch = asyncio.create_task(self._wait_exit(tracked, state), name=f"wait-{state.id}")

    async def _wait_exit(self, tracked: _Container, state: ContainerState) -> None:
        try:
            final = await self.runtime.wait(state.id)
        except KeyError:
            log.warning("pod %s: runtime lost container %s", self.uid, state.id)
            final = ContainerState(id=state.id, spec=state.spec, state=State.TERMINATED,
                                   started_at=state.started_at, finished_at=time.time(), exit_code=137,
                                   reason="ContainerStatusUnknown")
        if tracked.current is not None and tracked.current.id == state.id:
            tracked.current = final
            tracked.exited_at = self._clock.now()
        if tracked.prober is not None and tracked.prober.run_id == str(state.id):
            prober, tracked.prober = tracked.prober, None
            await prober.stop()
        self._wake.set()

    # -- killing ----------------------------------------------------------------------------

    async def _kill(self, container: Obj, tracked: _Container, *, grace: float, message: str) -> None:
        """Upstream's `killContainer`: a `Killing` event, preStop within `grace`, then stop with what is left."""
        current = tracked.current
        if current is None or current.state is not State.RUNNING:
            return
        if tracked.prober is not None:
            prober, tracked.prober = tracked.prober, None
            await prober.stop()
        await self._lifecycle.event(container["name"], "Normal", "Killing", message)
        hook = (container.get("lifecycle") or {}).get("preStop")
        if hook and grace > 0:
            began = self._clock.now()
            await self._lifecycle.pre_stop(container, current, hook, grace)
            grace -= int(self._clock.now() - began)  # whole seconds, as upstream counts them
        try:
            stopped = await self.runtime.stop(current.id, float(max(grace, MIN_GRACE_SECONDS)))
        except Exception as exc:
            log.warning("pod %s: stopping %s failed: %s", self._name, current, exc)
            return
        if tracked.current is not None and tracked.current.id == current.id:
            tracked.current = stopped
            tracked.exited_at = self._clock.now()

    async def _kill_unhealthy(self, container: Obj, tracked: _Container, policy: str) -> None:
        assert tracked.prober is not None and tracked.prober.failed is not None
        kind = tracked.prober.failed
        message = f"Container {container['name']} failed {kind} probe"
        if policy != "Never":
            message += ", will be restarted"
        grace = (container.get(PROBE_FIELDS[kind]) or {}).get("terminationGracePeriodSeconds")
        await self._kill(container, tracked, grace=self._grace(deleting=False) if grace is None else float(grace),
                         message=message)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Sync until the pod is deleted and its delete completed; cancel to leave containers running."""
        try:
            while not self.finished.is_set():
                self._wake.clear()
                try:
                    wake_in = await self._sync()
                except Exception:
                    log.exception("pod %s: sync failed; retrying", self._name)
                    wake_in = self._config.retry_interval
                if self.finished.is_set():
                    break
                await self._sleep(wake_in)
        finally:
            for tracked in self._containers.values():
                if tracked.watch is not None:
                    tracked.watch.cancel()
                if tracked.prober is not None:
                    tracked.prober.cancel()
            with contextlib.suppress(Exception):
                await self._lifecycle.aclose()

    async def _sleep(self, seconds: float | None) -> None:
        woken = asyncio.ensure_future(self._wake.wait())
        waiters: set[asyncio.Future[Any]] = {woken}
        if seconds is not None:
            waiters.add(asyncio.ensure_future(self._clock.sleep(max(0.0, seconds))))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    @property
    def _name(self) -> str:
        meta = self.pod.get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}"

    async def _sync(self) -> float | None:
        meta = self.pod.get("metadata") or {}
        if self._removed or meta.get("deletionTimestamp"):
            return await self._delete()
        if self._terminal is not None:
            await self._stop_all(self._grace(deleting=False))
            await self._teardown_volumes()
            await self._teardown_sandbox()
            await self._write_status()
            return None
        if (wait := self._deadline_remaining()) is not None and wait <= 0:
            self._terminal = ("Failed", "DeadlineExceeded", DEADLINE_MESSAGE)
            await self._stop_all(self._grace(deleting=False))
            await self._write_status()
            return None
        wakes = [wait, await self._sync_volumes()]
        if self._volumes_ready and not self._sandbox_ready:
            wakes.append(await self._setup_sandbox())
        if self._volumes_ready and self._sandbox_ready:
            wakes += await self._advance()
        status = await self._write_status()
        if status["phase"] in ("Succeeded", "Failed"):
            self._terminal = (status["phase"], "", "")
            return None
        due = [w for w in wakes if w is not None]
        return min(due) if due else None

    async def _sync_volumes(self) -> float | None:
        """Set up the pod's volumes when due; the seconds until the next time."""
        if self._volumes is None:
            return None
        if not (self.pod.get("spec") or {}).get("volumes"):
            self._volumes_ready = True  # nothing to set up, nor to look at again (pod volumes are immutable)
            return None
        meta = self.pod.get("metadata") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        now = self._clock.now()
        synced = self._volumes_synced
        if synced is None or now >= synced[0] or (labels, annotations) != synced[1:]:
            failures = await self._volumes.setup(self.pod)
            self._volumes_ready = self._volumes_ready or not failures
            interval = self._config.volume_sync_interval if self._volumes_ready else self._config.retry_interval
            synced = self._volumes_synced = (now + interval, dict(labels), dict(annotations))
        return max(0.0, synced[0] - now)

    async def _setup_sandbox(self) -> float | None:
        """Get the pod's address and network namespace from the plugin; the seconds until a retry, if it failed."""
        assert self._pod_network is not None
        try:
            interface = await self._pod_network.setup(self.uid)
        except Exception as exc:  # whatever the plugin raises is shown on the pod, and retried
            message = f"Failed to create pod sandbox: {exc}"
            log.warning("pod %s: %s", self._name, message)
            if message != self._sandbox_error:
                self._sandbox_error = message
                with contextlib.suppress(Exception):
                    await self._lifecycle.pod_event("Warning", "FailedCreatePodSandBox", message)
            return self._config.retry_interval
        self._network = replace(self._network, pod_ip=interface.ip, netns=interface.netns)
        self._sandbox_ready = True
        return None

    async def _teardown_sandbox(self) -> None:
        """Give the pod's network back once its containers stopped for good (its IP stays in its status)."""
        if self._pod_network is None or self._sandbox_torn_down:
            return
        self._sandbox_torn_down = True
        try:
            await self._pod_network.teardown(self.uid)
        except Exception as exc:  # the agent's start-up clean-up tries again
            log.warning("pod %s: could not tear down its network: %s", self._name, exc)

    async def _teardown_volumes(self) -> None:
        if self._volumes_torn_down:
            return
        self._volumes_torn_down = True
        if self._etc_files is not None:  # the pod's hosts and resolv.conf files go with its volumes
            await self._etc_files.remove(self.uid)
        if self._volumes is not None:
            await self._volumes.teardown(self.uid)

    def _deadline_remaining(self) -> float | None:
        seconds = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if seconds is None:
            return None
        if self._deadline_at is None:
            started = _parse_time(self._start_time)
            self._deadline_at = self._clock.now() + seconds - max(0.0, time.time() - started)
        return self._deadline_at - self._clock.now()

    async def _advance(self) -> list[float | None]:
        """Start or restart what the spec wants now; return when each blocked container wants another look."""
        spec = self.pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        apps = list(spec.get("containers") or ())
        started = any(self._containers[c["name"]].current is not None for c in apps)
        if not started:
            for container in spec.get("initContainers") or ():
                tracked = self._containers[container["name"]]
                current = tracked.current
                if current is not None and current.state is State.TERMINATED and current.exit_code == 0:
                    continue
                if current is not None and current.state is State.RUNNING:
                    return []
                if current is not None:  # failed
                    if policy == "Never":
                        return []  # the phase becomes Failed
                    return [await self._restart(container, tracked)]
                return [await self._start(container, tracked)]
        wakes: list[float | None] = []
        for container in apps:
            tracked = self._containers[container["name"]]
            if tracked.prober is not None and tracked.prober.failed is not None:
                await self._kill_unhealthy(container, tracked, policy)
            current = tracked.current
            if current is None:
                wakes.append(await self._start(container, tracked))
            elif current.state is State.TERMINATED and _should_restart(policy, current.exit_code):
                wakes.append(await self._restart(container, tracked))
        return wakes

    async def _restart(self, container: Obj, tracked: _Container) -> float | None:
        key = container["name"]
        since = tracked.exited_at if tracked.exited_at is not None else self._clock.now()
        remaining = self._backoff.remaining(key, since)
        if remaining > 0:
            meta = self.pod["metadata"]
            tracked.waiting = ("CrashLoopBackOff", f"back-off {go_duration(self._backoff.delay(key))} restarting "
                               f"failed container={key} pod={meta['name']}_{meta['namespace']}({self.uid})")
            return remaining
        if tracked.waiting is None or tracked.waiting[0] in _CRASHED:
            self._backoff.next(key, since)
        return await self._start(container, tracked)

    async def _start(self, container: Obj, tracked: _Container) -> float | None:
        now = self._clock.now()
        if tracked.retry_at is not None and now < tracked.retry_at:
            return tracked.retry_at - now
        attempt = tracked.next_attempt
        try:
            spec = await build_container_spec(self.client, self.pod, container, network=self._network,
                                              attempt=attempt, service_env=pod_service_env(self.pod, self._services))
            if self._volumes is not None:
                spec = replace(spec, mounts=await self._volumes.mounts(self.pod, container, env=spec.env))
            if self._etc_files is not None:
                etc = await self._etc_files.mounts(self.pod, container, pod_ip=self._network.pod_ip)
                spec = replace(spec, mounts=spec.mounts + etc)
            state = await self.runtime.start(spec)
        except Exception as exc:  # whatever the runtime raises is the container's waiting reason
            reason = getattr(exc, "reason", None) or "CreateContainerError"
            log.info("pod %s: container %s cannot start: %s: %s", self._name, container["name"], reason, exc)
            tracked.waiting = (str(reason), str(exc))
            tracked.retry_at = now + self._config.retry_interval
            return self._config.retry_interval
        previous = tracked.current
        if previous is not None and previous.state is State.TERMINATED:
            tracked.last_terminated = terminated_dict(previous)
        tracked.current = state
        tracked.restart_count = attempt
        tracked.next_attempt = attempt + 1
        tracked.waiting = None
        tracked.retry_at = None
        if state.state is not State.RUNNING:
            tracked.exited_at = self._clock.now()
            self._wake.set()
            return None
        self._watch(tracked, state)
        hook = (container.get("lifecycle") or {}).get("postStart")
        if hook and (error := await self._lifecycle.post_start(container, state, hook,
                                                               deleting=self._deleting)) is not None:
            await self._kill(container, tracked, grace=self._grace(deleting=False), message="FailedPostStartHook")
            policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
            if tracked.current is not None and _should_restart(policy, tracked.current.exit_code):
                tracked.waiting = ("PostStartHookError", error)
            return None
        if tracked.current is not None and tracked.current.state is State.RUNNING:
            tracked.prober = self._lifecycle.prober(container, state, on_change=self._wake.set)
        return None

    # -- stopping and deleting ------------------------------------------------------------

    def _grace(self, *, deleting: bool) -> float:
        """The pod's grace period (preStop included); `_kill` gives the runtime at least 2 s of what is left."""
        meta = self.pod.get("metadata") or {}
        spec = self.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds") if deleting else None
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(max(grace, 0))

    async def _stop_all(self, grace: float) -> None:
        running = [(c, self._containers[c["name"]]) for c in self._all_specs()
                   if (t := self._containers[c["name"]]).current is not None and t.current.state is State.RUNNING]
        # In parallel, each with its own preStop, as upstream kills a pod's containers.
        await asyncio.gather(*(self._kill(c, t, grace=grace, message=f"Stopping container {c['name']}")
                               for c, t in running))
        for tracked in self._containers.values():
            tracked.waiting = None

    async def _delete(self) -> float | None:
        await self._stop_all(self._grace(deleting=True))
        await self._teardown_volumes()
        await self._teardown_sandbox()
        if not self._removed:
            meta = self.pod["metadata"]
            with contextlib.suppress(NotFound, Conflict):
                await self._write_status(deleting=True)
            try:
                await self.client.delete(PODS, meta["name"], namespace=meta["namespace"], grace_period_seconds=0,
                                         preconditions={"uid": self.uid})
            except (NotFound, Conflict):
                pass  # already gone, or a new pod with the same name: ours is gone either way
        await self._remove_from_runtime()
        self.finished.set()
        return None

    async def _remove_from_runtime(self) -> None:
        """The pod is gone: the runtime forgets its containers and their files (kubelet's container GC)."""
        try:
            await self.runtime.remove_pod(self.uid)
        except Exception as exc:  # a container that would not stop: a restarted agent removes it later
            log.warning("pod %s: could not remove its containers from the runtime: %s", self._name, exc)

    # -- status ---------------------------------------------------------------------------

    def _status(self, *, deleting: bool) -> Obj:
        spec = self.pod.get("spec") or {}
        inits = list(spec.get("initContainers") or ())
        default_waiting = "PodInitializing" if inits else "ContainerCreating"

        def entry(container: Obj, default: str) -> Obj:
            t = self._containers[container["name"]]
            # A run without a prober yet (or any more) is judged by which probes it has.
            started = t.prober.started if t.prober else not container.get("startupProbe")
            ready = t.prober.ready if t.prober else not container.get("readinessProbe")
            return container_status(container, current=t.current, waiting=t.waiting,
                                    last_terminated=t.last_terminated, restart_count=t.restart_count,
                                    default_waiting=default, started=started, ready=ready)

        init_statuses = [entry(c, "PodInitializing") for c in inits]
        statuses = [entry(c, default_waiting) for c in spec.get("containers") or ()]
        reason = message = ""
        if self._terminal is not None:
            phase, reason, message = self._terminal
        else:
            phase = pod_phase(spec, init_statuses, statuses, terminal=deleting)
        old = self.pod.get("status") or {}
        # The informer may lag behind our last write: our own conditions' transition times come from that write.
        ours = {c["type"]: c for c in (self._last_written or {}).get("conditions") or ()}
        previous = [ours.get(c.get("type"), c) for c in old.get("conditions") or ()]
        previous += [c for t, c in ours.items() if t not in {p.get("type") for p in previous}]
        ip = self._network.pod_ip if self._sandbox_ready or self._sandbox_torn_down else ""
        now = rfc3339(time.time())
        sandbox = "True" if self._sandbox_ready or self._sandbox_torn_down else "False"
        conditions = [c for c in pod_conditions(spec, phase, init_statuses, statuses, old=previous, now=now)
                      if c["type"] != HOST_NETWORK_CONDITION]
        for condition in conditions:
            if condition["type"] == "PodReadyToStartContainers" and condition["status"] != sandbox:
                condition["status"] = sandbox  # no sandbox yet: the plugin has not given the pod its network
        fallback = self._config.host_network_fallback
        if fallback and self._pod_network is None and not host_network(self.pod):
            since = next((c.get("lastTransitionTime") for c in previous if c.get("type") == HOST_NETWORK_CONDITION
                          and c.get("status") == "True"), None)
            conditions.append({"type": HOST_NETWORK_CONDITION, "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": since or now, "reason": "NoPodNetwork", "message": fallback})
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self._network.host_ip,
            "hostIPs": [{"ip": self._network.host_ip}],
            "podIP": ip or None,
            "podIPs": [{"ip": ip}] if ip else None,
            "startTime": self._start_time,
            "containerStatuses": statuses,
            "reason": reason or None,
            "message": message or None,
        }
        if inits:
            status["initContainerStatuses"] = init_statuses
        return status

    async def _write_status(self, *, deleting: bool = False) -> Obj:
        """Patch `pods/status` with the kubelet-owned fields when they differ from what the server has."""
        status = self._status(deleting=deleting)
        old = self.pod.get("status") or {}
        current = {k: old.get(k) for k in status}
        if status != current and status != self._last_written:
            meta = self.pod["metadata"]
            await self.client.patch(PODS, meta["name"], {"metadata": {"uid": self.uid}, "status": status},
                                    namespace=meta["namespace"], subresource="status")
            self._last_written = status
        return status


def _parse_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
