"""Pod workers: what makes the node agent run the pods bound to its node, as the kubelet does.

- `PodWorkers` (`_manager`): one worker per pod uid, fed by the agent's pod
  informer; recovers containers after an agent restart.
- `PodWorker` (`_worker`): drives one pod through a `Runtime` (init
  containers, restart policy, CrashLoopBackOff, active deadline, graceful
  deletion) and writes its status.
- `build_container_spec` (`_env`): env, `$(VAR)` expansion, downward API,
  ConfigMap/Secret references.
- `_status`: upstream's phase, conditions and container-status rules, pure.
- `Backoff` (`_backoff`): the CrashLoopBackOff timer on an injectable clock.
"""

from ._backoff import Backoff, go_duration
from ._env import ContainerConfigError, PodNetwork, build_container_spec, expand
from ._manager import PodWorkers
from ._status import container_status, pod_conditions, pod_phase
from ._worker import PodWorker, PodWorkerConfig

__all__ = [
    "Backoff",
    "ContainerConfigError",
    "PodNetwork",
    "PodWorker",
    "PodWorkerConfig",
    "PodWorkers",
    "build_container_spec",
    "container_status",
    "expand",
    "go_duration",
    "pod_conditions",
    "pod_phase",
]
