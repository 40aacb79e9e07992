"""The client side of Timoner: what every component uses to talk to the API server.

- `load_kubeconfig` / `ClientConfig`: where the server is and who we are.
- `Client`: the REST verbs (`get`, `list`, `create`, `update`, `patch`,
  `delete`, `watch`) over one connection pool, JSON in and out as plain
  dicts; failures raise `timoner.api.errors` exceptions.
- `Resource` / `resource_for`: which URL a kind lives at.
- `Informer` and its `Lister`: a local list+watch cache with change handlers.
- `WorkQueue`: client-go's rate-limited, deduplicating queue of keys.
- `LeaderElector`: leader election on a coordination.k8s.io/v1 Lease.
- `EventRecorder`: core/v1 Events about objects, repeats counted as client-go does.

Only `timoner.api` is imported from the rest of Timoner (import-linter
enforces it), so components depend on the wire, not on the server.
"""

from ._config import ClientConfig, KubeconfigError, load_kubeconfig
from ._errors import error_from_status
from ._events import EVENTS, EventRecorder
from ._informer import EventHandler, Informer, Lister, object_key
from ._leaderelection import LEASES, LeaderElector, micro_time
from ._resource import Resource, resource_for
from ._rest import Client, PatchType, WatchEvent
from ._workqueue import (
    BucketRateLimiter,
    Clock,
    ExponentialRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    RealClock,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)

__all__ = [
    "EVENTS",
    "LEASES",
    "BucketRateLimiter",
    "Client",
    "ClientConfig",
    "Clock",
    "EventHandler",
    "EventRecorder",
    "ExponentialRateLimiter",
    "Informer",
    "KubeconfigError",
    "LeaderElector",
    "Lister",
    "MaxOfRateLimiter",
    "PatchType",
    "RateLimiter",
    "RealClock",
    "Resource",
    "ShutDown",
    "WatchEvent",
    "WorkQueue",
    "default_controller_rate_limiter",
    "error_from_status",
    "load_kubeconfig",
    "micro_time",
    "object_key",
    "resource_for",
]
