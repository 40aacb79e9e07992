"""What the node agent knows about the machine it runs on: its facts, its resources, its pressure.

Three layers, so the parsing can be tested on sample text without a machine:

1. Pure parsers (`parse_meminfo`, `parse_os_release`, `go_arch`) over the
   text of `/proc/meminfo`, `/etc/os-release` and `uname -m`.
2. `read_machine(root_dir)` reads the facts that do not change while the
   agent runs (cpu count, memory and disk size, kernel, OS image, boot and
   machine ids) into a frozen `Machine`; `sample_usage(root_dir)` reads what
   does change (available memory, free disk, running processes).
3. `capacity` / `allocatable` / `pressure` turn those into the Kubernetes
   words the Node status speaks.

Reservations (what allocatable leaves out of capacity), documented because a
scheduler packs pods against allocatable:

- cpu: 100m, for the agent itself (upstream reserves nothing by default, but
  upstream's kubelet is not also the container runtime; ours is).
- memory: 100Mi, the hard eviction threshold `memory.available<100Mi`, as
  upstream subtracts its eviction thresholds from allocatable.
- ephemeral-storage: 10% of the filesystem, the `nodefs.available<10%`
  threshold, for the same reason.
- pods: none; capacity is 110, upstream's default `maxPods`.

Pressure thresholds are upstream's hard eviction defaults where upstream has
one (memory.available<100Mi, nodefs.available<10%); upstream sets no default
for `pid.available`, so we use 10% of `kernel.pid_max`, which keeps room for
the agent to fork a shell when pods have used up the rest.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_PODS",
    "Machine",
    "MemInfo",
    "Pressure",
    "Thresholds",
    "Usage",
    "allocatable",
    "capacity",
    "go_arch",
    "node_addresses",
    "parse_meminfo",
    "parse_os_release",
    "pressure",
    "primary_ipv4",
    "read_machine",
    "sample_usage",
]

DEFAULT_MAX_PODS = 110
_MI = 1024 * 1024
_CPU_RESERVED_MILLI = 100
_MEMORY_RESERVED = 100 * _MI

# Go's GOARCH names for `uname -m`, since nodeInfo.architecture and the kubernetes.io/arch label use them.
_GO_ARCH = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "386", "i686": "386", "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}


@dataclass(frozen=True, slots=True)
class MemInfo:
    """The two `/proc/meminfo` figures we use, in bytes."""

    total: int
    available: int


@dataclass(frozen=True, slots=True)
class Machine:
    """The facts about this machine that hold for the agent's lifetime."""

    hostname: str
    cpus: int
    memory_bytes: int
    storage_bytes: int  # size of the filesystem holding the agent's root dir
    kernel_version: str
    os_image: str
    operating_system: str
    architecture: str
    boot_id: str
    machine_id: str
    system_uuid: str


@dataclass(frozen=True, slots=True)
class Usage:
    """A sample of what changes: free memory, free disk under the root dir, processes."""

    memory_available: int
    storage_available: int
    storage_capacity: int
    processes: int
    pid_max: int


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When the node is under pressure; defaults are upstream's hard eviction thresholds (see module doc)."""

    memory_available_bytes: int = _MEMORY_RESERVED
    storage_available_fraction: float = 0.10
    pid_available_fraction: float = 0.10


@dataclass(frozen=True, slots=True)
class Pressure:
    """Which of the three pressure conditions hold."""

    memory: bool
    disk: bool
    pid: bool


# -- pure parsers --------------------------------------------------------------------------------------


def parse_meminfo(text: str) -> MemInfo:
    """`MemTotal` and `MemAvailable` from `/proc/meminfo` text, in bytes.

    Kernels before 3.14 have no `MemAvailable`; free + buffers + cached is
    the estimate tools used before it existed.
    """
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1].lower() == "kb":
            value *= 1024
        fields[key.strip()] = value
    if "MemTotal" not in fields:
        raise ValueError("no MemTotal in meminfo")
    available = fields.get("MemAvailable")
    if available is None:
        available = fields.get("MemFree", 0) + fields.get("Buffers", 0) + fields.get("Cached", 0)
    return MemInfo(total=fields["MemTotal"], available=available)


def parse_os_release(text: str) -> str:
    """The OS image as upstream reports it: `PRETTY_NAME` from os-release, else "Linux"."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        values[key.strip()] = value
    return values.get("PRETTY_NAME") or values.get("NAME") or "Linux"


def go_arch(machine: str) -> str:
    """Go's GOARCH for a `uname -m` value (`x86_64` -> `amd64`); unknown values pass through."""
    return _GO_ARCH.get(machine, machine)


# -- reading the machine ---------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _read_first(*paths: str) -> str:
    for path in paths:
        text = _read(path)
        if text:
            return text
    return ""


def read_machine(root_dir: Path) -> Machine:
    """Read this machine's lasting facts; disk size is that of the filesystem holding `root_dir`."""
    meminfo = parse_meminfo(Path("/proc/meminfo").read_text())
    fs = os.statvfs(root_dir)
    os_release = _read_first("/etc/os-release", "/usr/lib/os-release")
    return Machine(
        # Upstream lowercases the hostname: node names must be DNS subdomains.
        hostname=socket.gethostname().lower(),
        cpus=os.cpu_count() or 1,
        memory_bytes=meminfo.total,
        storage_bytes=fs.f_blocks * fs.f_frsize,
        kernel_version=platform.release(),
        os_image=parse_os_release(os_release) if os_release else "Linux",
        operating_system=sys.platform if sys.platform != "linux2" else "linux",
        architecture=go_arch(platform.machine()),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        machine_id=_read_first("/etc/machine-id", "/var/lib/dbus/machine-id"),
        # Readable only by root on most machines; upstream leaves it empty then, too.
        system_uuid=_read("/sys/class/dmi/id/product_uuid").lower(),
    )


def sample_usage(root_dir: Path) -> Usage:
    """Sample free memory, free disk under `root_dir` and the process count, now."""
    meminfo = parse_meminfo(Path("/proc/meminfo").read_text())
    fs = os.statvfs(root_dir)
    try:
        processes = sum(1 for entry in os.scandir("/proc") if entry.name.isdigit())
    except OSError:
        processes = 0
    pid_max_text = _read("/proc/sys/kernel/pid_max")
    return Usage(
        memory_available=meminfo.available,
        # f_bavail, not f_bfree: what an unprivileged writer (a pod) can still use.
        storage_available=fs.f_bavail * fs.f_frsize,
        storage_capacity=fs.f_blocks * fs.f_frsize,
        processes=processes,
        pid_max=int(pid_max_text) if pid_max_text.isdigit() else 32768,
    )


def primary_ipv4() -> str:
    """The source address the kernel picks for the default route, or 127.0.0.1 without one.

    Connecting a UDP socket sends nothing; it only asks the routing table.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            return str(sock.getsockname()[0])
    except OSError:
        return "127.0.0.1"


# -- Kubernetes words --------------------------------------------------------------------------------


def capacity(machine: Machine, *, max_pods: int = DEFAULT_MAX_PODS) -> dict[str, str]:
    """`status.capacity`, formatted as upstream does (memory and disk in Ki)."""
    return {
        "cpu": str(machine.cpus),
        "ephemeral-storage": f"{machine.storage_bytes // 1024}Ki",
        "memory": f"{machine.memory_bytes // 1024}Ki",
        "pods": str(max_pods),
    }


def allocatable(machine: Machine, *, max_pods: int = DEFAULT_MAX_PODS,
                thresholds: Thresholds = Thresholds()) -> dict[str, str]:
    """`status.allocatable`: capacity minus the reservations in the module docstring, never below zero."""
    cpu_milli = max(0, machine.cpus * 1000 - _CPU_RESERVED_MILLI)
    memory = max(0, machine.memory_bytes - thresholds.memory_available_bytes)
    storage = max(0, int(machine.storage_bytes * (1 - thresholds.storage_available_fraction)))
    return {
        "cpu": f"{cpu_milli}m" if cpu_milli % 1000 else str(cpu_milli // 1000),
        # Upstream prints allocatable storage as plain bytes and memory in Ki; kubectl shows them so.
        "ephemeral-storage": str(storage),
        "memory": f"{memory // 1024}Ki",
        "pods": str(max_pods),
    }


def pressure(usage: Usage, thresholds: Thresholds = Thresholds()) -> Pressure:
    """Which pressure conditions `usage` crosses."""
    storage_floor = usage.storage_capacity * thresholds.storage_available_fraction
    pid_floor = usage.pid_max * thresholds.pid_available_fraction
    return Pressure(
        memory=usage.memory_available < thresholds.memory_available_bytes,
        disk=usage.storage_available < storage_floor,
        pid=usage.pid_max - usage.processes < pid_floor,
    )


def node_addresses(machine: Machine, *, node_ip: str) -> list[dict[str, str]]:
    """`status.addresses`: InternalIP first (kubectl's INTERNAL-IP column), then Hostname."""
    return [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": machine.hostname}]
