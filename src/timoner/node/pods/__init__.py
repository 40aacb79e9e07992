"""Pod workers: what makes the node agent run the pods bound to its node, as the kubelet does.

- `PodWorkers` (`_manager`): one worker per pod uid, fed by the agent's pod
  informer; recovers containers after an agent restart.
- `PodWorker` (`_worker`): drives one pod through a `Runtime` (init
  containers, restart policy, CrashLoopBackOff, probes, lifecycle hooks,
  active deadline, graceful deletion) and writes its status.
- `ContainerLifecycle` (`_lifecycle`): a worker's probes, postStart and
  preStop hooks and kubelet events; `ContainerProber` (`_probes`): the
  startup/liveness/readiness probes of one container run on an injectable
  clock; `_handlers`: the exec, httpGet, tcpSocket and sleep actions they
  run, with upstream's outcomes and messages.
- `PodNetworkPlugin` (`_network`): the pods' own network (address and
  network namespace), as kubelet's CNI; none means the host's network.
- `build_container_spec` (`_env`): env, `$(VAR)` expansion, downward API,
  ConfigMap/Secret references; `_services`: the Service variables
  (`FOO_SERVICE_HOST`, ...) from the agent's Service informer.
- `PodEtcFiles` (`_dns`): each pod's `/etc/hosts` and `/etc/resolv.conf`
  (dnsPolicy, dnsConfig, hostAliases) as kubelet forms them, bound into
  its containers.
- `VolumeManager` (`_volumes`): the pod's volumes under the agent's root
  directory (emptyDir, configMap, secret, downwardAPI, projected,
  hostPath), kept up to date, and the containers' mounts; files are written
  by upstream's AtomicWriter (`_atomic.write_payload`).
- `_status`: upstream's phase, conditions and container-status rules, pure.
- `Backoff` (`_backoff`): the CrashLoopBackOff timer on an injectable clock.
"""

from ._backoff import Backoff, go_duration
from ._dns import PodEtcFiles
from ._env import ContainerConfigError, PodNetwork, build_container_spec, expand
from ._manager import PodWorkers
from ._network import HOST_NETWORK_CONDITION, PodInterface, PodNetworkPlugin
from ._status import container_status, pod_conditions, pod_phase
from ._volumes import MountFailure, VolumeManager, pods_with_volumes, remove_pod_volumes
from ._worker import PodWorker, PodWorkerConfig

__all__ = [
    "HOST_NETWORK_CONDITION",
    "Backoff",
    "ContainerConfigError",
    "MountFailure",
    "PodEtcFiles",
    "PodInterface",
    "PodNetwork",
    "PodNetworkPlugin",
    "PodWorker",
    "PodWorkerConfig",
    "PodWorkers",
    "VolumeManager",
    "build_container_spec",
    "container_status",
    "expand",
    "go_duration",
    "pod_conditions",
    "pod_phase",
    "pods_with_volumes",
    "remove_pod_volumes",
]
