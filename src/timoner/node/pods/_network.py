"""The seam between the pod workers and the pod network: `PodNetworkPlugin`, as kubelet's CNI.

The agent is given a plugin (the CLI wires `timoner.network.BridgeNetwork`
in when it runs as root); without one, pods share the host's network. A
worker asks `setup(uid)` for its pod's address and network namespace
before the first container starts (a failure is a Warning
`FailedCreatePodSandBox` and is retried), and `teardown(uid)` once the
pod's containers have stopped for good. `setup` must be idempotent: an
agent restarted beside running pods asks again and must get the same
answer. `pods()` lists the uids the plugin holds something for, so the
agent can free what belongs to pods deleted while it was down. `init`
comes first, once the Node has its `spec.podCIDR` (from the controller
manager's node IPAM controller): pods wait for it.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["HOST_NETWORK_CONDITION", "PodInterface", "PodNetworkPlugin", "host_network"]

# The pod condition that says a pod shares the host's network because the agent has no pod network (not root).
HOST_NETWORK_CONDITION = "timoner.dev/HostNetworkFallback"


class PodInterface(Protocol):
    @property
    def ip(self) -> str: ...

    @property
    def netns(self) -> str: ...


class PodNetworkPlugin(Protocol):
    async def init(self, pod_cidr: str) -> None:
        """Get the node ready for pods of `pod_cidr` (the Node's `spec.podCIDR`); called once, first."""

    async def setup(self, pod_uid: str) -> PodInterface: ...

    async def teardown(self, pod_uid: str) -> None: ...

    def pods(self) -> set[str]: ...


def host_network(pod: dict) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))
