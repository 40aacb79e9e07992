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
- controllers: `replicaset` (ReplicaSets and ReplicationControllers) and
  `deployment`.

Events are posted with `timoner.client.EventRecorder` under upstream's
component names (`replicaset-controller`, `replication-controller`,
`deployment-controller`).
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
from .deployment import DeploymentReconciler, new_deployment_controller
from .replicaset import REPLICA_SET, REPLICATION_CONTROLLER, ReplicaSetReconciler, new_replicaset_controller

__all__ = [
    "LEASE_NAME",
    "LEASE_NAMESPACE",
    "REPLICATION_CONTROLLER",
    "REPLICA_SET",
    "Change",
    "Controller",
    "DeploymentReconciler",
    "Expectations",
    "LeadershipLost",
    "Manager",
    "Mapper",
    "Reconciler",
    "ReplicaSetReconciler",
    "Request",
    "Result",
    "SharedInformers",
    "controller_ref",
    "main",
    "new_deployment_controller",
    "new_manager",
    "new_replicaset_controller",
]
