"""Service cluster IPs and node ports, allocated by the API server as upstream does.

The allocators hold only what is in use, rebuilt from the Services in the
watch cache at start and kept up to date by the store on every Service
create, update and delete. A clash with a requested address is a 422.
"""

from __future__ import annotations

import ipaddress
import random

from timoner.api.errors import Cause, Invalid

__all__ = ["ClusterIPAllocator", "NodePortAllocator"]


class ClusterIPAllocator:
    """Hands out addresses from the service CIDR; the first one is the `kubernetes` Service's."""

    def __init__(self, cidr: str = "100.65.0.0/16") -> None:
        self.network = ipaddress.ip_network(cidr)
        self._used: set[str] = set()
        # Network and broadcast addresses are never handed out.
        self._first = int(self.network.network_address) + 1
        self._last = int(self.network.broadcast_address) - 1

    @property
    def kubernetes_ip(self) -> str:
        return str(ipaddress.ip_address(self._first))

    @property
    def dns_ip(self) -> str:
        """The tenth address (`100.65.0.10`), kube-dns's, as kubeadm picks it."""
        return str(ipaddress.ip_address(min(self._first + 9, self._last)))

    def contains(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    def reserve(self, ip: str, *, field: str = "spec.clusterIPs", name: str = "") -> None:
        if not self.contains(ip):
            raise Invalid("Service", name, [Cause(
                "FieldValueInvalid",
                f'Invalid value: ["{ip}"]: failed to allocate IP {ip}: the provided IP ({ip}) is not in the '
                f"valid range. The range of valid IPs is {self.network}", field)])
        if ip in self._used:
            raise Invalid("Service", name, [Cause(
                "FieldValueInvalid",
                f'Invalid value: ["{ip}"]: failed to allocate IP {ip}: provided IP is already allocated',
                field)])
        self._used.add(ip)

    def allocate(self) -> str:
        size = self._last - self._first + 1
        if len(self._used) >= size:
            raise Invalid("Service", "", [Cause("FieldValueInvalid", "range is full", "spec.clusterIPs")])
        # Skip the first address: it belongs to the `kubernetes` Service.
        while True:
            candidate = str(ipaddress.ip_address(random.randint(self._first + 1, self._last)))
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate

    def mark(self, ip: str) -> None:
        if self.contains(ip):
            self._used.add(ip)

    def release(self, ip: str) -> None:
        self._used.discard(ip)


class NodePortAllocator:
    """Hands out node ports from a range (default 30000-32767)."""

    def __init__(self, low: int = 30000, high: int = 32767) -> None:
        self.low = low
        self.high = high
        self._used: set[int] = set()

    def reserve(self, port: int, *, field: str, name: str = "") -> None:
        if not self.low <= port <= self.high:
            raise Invalid("Service", name, [Cause(
                "FieldValueInvalid",
                f"Invalid value: {port}: provided port is not in the valid range. "
                f"The range of valid ports is {self.low}-{self.high}", field)])
        if port in self._used:
            raise Invalid("Service", name, [Cause(
                "FieldValueInvalid", f"Invalid value: {port}: provided port is already allocated", field)])
        self._used.add(port)

    def allocate(self) -> int:
        if len(self._used) > self.high - self.low:
            raise Invalid("Service", "", [Cause("FieldValueInvalid", "range is full", "spec.ports")])
        while True:
            port = random.randint(self.low, self.high)
            if port not in self._used:
                self._used.add(port)
                return port

    def mark(self, port: int) -> None:
        self._used.add(port)

    def release(self, port: int) -> None:
        self._used.discard(port)
