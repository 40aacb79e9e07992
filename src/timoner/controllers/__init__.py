"""The controller manager and its controllers: what turns Deployments into ReplicaSets into pods.

Layers:

- the framework (`_framework`): `Request` (namespace and name only),
  `Result`, the `Reconciler` protocol, `Controller` (workers over a
  rate-limited `WorkQueue`, fed by informer changes through `for_`,
  `owns` and `watches`) and `SharedInformers` (one informer per resource);
- `Manager` (`_manager`): leader election on the Lease
  `kube-system/timoner-controller-manager`, then informers, cache sync and
  controllers; `main` is `timoner controllers`;
- shared pieces: `Expectations` (creates and deletes not yet seen in the
  cache), claiming by `ownerReferences` (`_refs`), pod facts, deletion
  ranking and slow start (`_pods`), Deployment arithmetic
  (`_deployment_util`);
- controllers: `replicaset` (ReplicaSets and ReplicationControllers),
  `deployment`, `statefulset` and `daemonset` (ControllerRevision history
  in `_history`, pure helpers in `_stateful_util` and `_daemon_util`),
  `persistentvolume` (the PV binder), `disruption` (PodDisruptionBudget
  status), `podgc` (the pod garbage collector),
  `job`, `cronjob` and `ttlafterfinished` (finished Jobs deleted after
  their TTL), with pure helpers in `_job_util` and `_cronjob_util`;
  `endpoints` and `endpointslice` (what Services select, shared pod facts
  in `_endpoints_util`, the slice arithmetic in `_endpointslice_util`) and
  `nodeipam` (pod CIDRs for Nodes, from a `_cidrset.CidrSet`).

Events are posted with `timoner.client.EventRecorder` under upstream's
component names (`replicaset-controller`, `replication-controller`,
`deployment-controller`, `statefulset-controller`, `daemonset-controller`,
`persistentvolume-controller`, `controllermanager` for the disruption controller, `job-controller`, `cronjob-controller`,
`endpoint-controller`, `endpoint-slice-controller`, `cidrAllocator`).
"""

from ._expectations import Expectations
from ._framework import (
    Change,
    Controller,
    Mapper,
    Reconciler,
    Request,
    Result,
    SharedInformers,
    controller_ref,
)
from ._manager import LEASE_NAME, LEASE_NAMESPACE, LeadershipLost, Manager, main, new_manager
from .cronjob import CronJobReconciler, new_cronjob_controller
from .daemonset import DaemonSetReconciler, new_daemonset_controller
from .deployment import DeploymentReconciler, new_deployment_controller
from .disruption import (
    DisruptionReconciler,
    StalePodDisruptionReconciler,
    new_disruption_controller,
    new_stale_pod_disruption_controller,
)
from .endpoints import EndpointsReconciler, new_endpoints_controller
from .endpointslice import EndpointSliceReconciler, new_endpointslice_controller
from .job import JobReconciler, new_job_controller
from .nodeipam import NodeIPAMReconciler, new_nodeipam_controller
from .persistentvolume import PersistentVolumeReconciler, new_persistentvolume_controller
from .podgc import TERMINATED_POD_GC_THRESHOLD, PodGCReconciler, new_podgc_controller
from .replicaset import REPLICA_SET, REPLICATION_CONTROLLER, ReplicaSetReconciler, new_replicaset_controller
from .statefulset import StatefulSetReconciler, new_statefulset_controller
from .ttlafterfinished import TTLAfterFinishedReconciler, new_ttl_after_finished_controller

__all__ = [
    "LEASE_NAME",
    "LEASE_NAMESPACE",
    "REPLICATION_CONTROLLER",
    "REPLICA_SET",
    "TERMINATED_POD_GC_THRESHOLD",
    "Change",
    "Controller",
    "CronJobReconciler",
    "DaemonSetReconciler",
    "DeploymentReconciler",
    "DisruptionReconciler",
    "EndpointSliceReconciler",
    "EndpointsReconciler",
    "Expectations",
    "JobReconciler",
    "LeadershipLost",
    "Manager",
    "Mapper",
    "NodeIPAMReconciler",
    "PersistentVolumeReconciler",
    "PodGCReconciler",
    "Reconciler",
    "ReplicaSetReconciler",
    "Request",
    "Result",
    "SharedInformers",
    "StatefulSetReconciler",
    "StalePodDisruptionReconciler",
    "TTLAfterFinishedReconciler",
    "controller_ref",
    "main",
    "new_cronjob_controller",
    "new_daemonset_controller",
    "new_deployment_controller",
    "new_disruption_controller",
    "new_endpoints_controller",
    "new_endpointslice_controller",
    "new_job_controller",
    "new_manager",
    "new_nodeipam_controller",
    "new_persistentvolume_controller",
    "new_podgc_controller",
    "new_replicaset_controller",
    "new_stale_pod_disruption_controller",
    "new_statefulset_controller",
    "new_ttl_after_finished_controller",
]
