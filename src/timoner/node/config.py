"""`AgentConfig`: everything the node agent is told rather than discovers, with upstream's defaults.

Intervals live here (not as function parameters) so tests run the real
loops fast by building a config with short intervals, and the `clock` field
lets a simulation drive time itself.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from timoner.client import Clock, RealClock

from .machine import DEFAULT_MAX_PODS, Thresholds

__all__ = ["KUBELET_VERSION", "NODE_LEASE_NAMESPACE", "RUNTIMES", "AgentConfig", "default_root_dir"]

KUBELET_VERSION = "v1.32.0-timoner"
NODE_LEASE_NAMESPACE = "kube-node-lease"
RUNTIMES = ("process", "hollow")  # runc (OCI images) comes with a later milestone
RUNTIME_VERSION = "0.1"


def default_root_dir() -> Path:
    """`/var/lib/timoner/agent` for root, else under the user's data dir (a laptop needs no sudo)."""
    if os.geteuid() == 0:
        return Path("/var/lib/timoner/agent")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "timoner" / "agent"


def default_node_name() -> str:
    """The hostname, lowercased as upstream does, since node names are DNS subdomains."""
    return socket.gethostname().lower()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How one node agent runs.

    - `lease_interval`: how often the NodeLease is renewed (upstream: 10 s,
      a quarter of `lease_duration_seconds`).
    - `status_update_interval`: how often the status is recomputed and
      compared with the last one reported (upstream's
      nodeStatusUpdateFrequency, 10 s).
    - `status_report_interval`: the longest the status goes unwritten when
      nothing changes (upstream's nodeStatusReportFrequency, 5 min).
    - `node_ip`: the InternalIP; None picks the host's primary IPv4.
    """

    node_name: str = field(default_factory=default_node_name)
    runtime: str = "process"
    root_dir: Path = field(default_factory=default_root_dir)
    node_ip: str | None = None
    node_labels: Mapping[str, str] = field(default_factory=dict)
    kubelet_port: int = 10250
    local_path_provisioner: bool = True  # provision `rancher.io/local-path` claims placed on this node
    max_pods: int = DEFAULT_MAX_PODS
    thresholds: Thresholds = Thresholds()
    lease_duration_seconds: int = 40
    lease_interval: float = 10.0
    status_update_interval: float = 10.0
    status_report_interval: float = 300.0
    clock: Clock = field(default_factory=RealClock, compare=False)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if not self.node_name:
            raise ValueError("node_name must not be empty")
        if self.max_pods < 0:
            raise ValueError("max_pods must be >= 0")
        if not 0 < self.lease_interval < self.lease_duration_seconds:
            raise ValueError("need 0 < lease_interval < lease_duration_seconds")
        if not 0 < self.status_update_interval <= self.status_report_interval:
            raise ValueError("need 0 < status_update_interval <= status_report_interval")

    @property
    def container_runtime_version(self) -> str:
        return f"timoner-{self.runtime}://{RUNTIME_VERSION}"
