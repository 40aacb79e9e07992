"""`CidrSet`: the node CIDRs carved out of a cluster CIDR, which are taken, and the next free one (upstream's cidrset).

The cluster CIDR (`100.64.0.0/16`) is cut into blocks of the node mask size
(`/24`: 256 of them). `allocate_next` hands out the first free block at or
after the one following the last handed out, wrapping around, so a block
just released is not reused at once. `occupy` and `release` mark any CIDR
inside (or around) the range: every block it overlaps.
"""

from __future__ import annotations

import ipaddress

__all__ = ["CIDRRangeFull", "CidrSet"]

# Upstream's clusterSubnetMaxDiff: at most 2^16 node blocks in one cluster CIDR.
_MAX_MASK_DIFF = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CIDRRangeFull(Exception):
    """Every node CIDR of the range is taken."""

    def __init__(self) -> None:
        super().__init__("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")


class CidrSet:
    """The blocks of `node_mask_size` bits in `cluster_cidr` and which are in use; see the module docstring."""

    def __init__(self, cluster_cidr: str, node_mask_size: int) -> None:
        self.cluster: Network = ipaddress.ip_network(cluster_cidr, strict=False)
        cluster_mask = self.cluster.prefixlen
        if node_mask_size < cluster_mask or node_mask_size - cluster_mask > _MAX_MASK_DIFF \
                or node_mask_size > self.cluster.max_prefixlen:
            raise ValueError(f"New CIDR set failed; the node CIDR size is too big: node mask /{node_mask_size} "
                             f"in cluster CIDR {self.cluster}")
        self.node_mask_size = node_mask_size
        self.max_cidrs = 1 << (node_mask_size - cluster_mask)
        self._shift = self.cluster.max_prefixlen - node_mask_size
        self._used: set[int] = set()
        self._next_candidate = 0

    @property
    def allocated(self) -> int:
        return len(self._used)

    def _cidr(self, index: int) -> str:
        address = ipaddress.ip_address(int(self.cluster.network_address) + (index << self._shift))
        return f"{address}/{self.node_mask_size}"

    def _index(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
        return (int(address) - int(self.cluster.network_address)) >> self._shift

    def _indices(self, cidr: str) -> range:
        """The blocks `cidr` overlaps; ValueError when it is malformed or outside the range."""
        network = ipaddress.ip_network(cidr, strict=False)
        if network.version != self.cluster.version or not network.overlaps(self.cluster):
            raise ValueError(f"cidr {network} is out the range of cluster cidr {self.cluster}")
        if network.prefixlen <= self.cluster.prefixlen:
            return range(self.max_cidrs)  # it covers the whole range
        return range(self._index(network.network_address), self._index(network.broadcast_address) + 1)

    def allocate_next(self) -> str:
        """Take the next free block; `CIDRRangeFull` when there is none."""
        if len(self._used) >= self.max_cidrs:
            raise CIDRRangeFull()
        candidate = self._next_candidate
        for _ in range(self.max_cidrs):
            if candidate not in self._used:
                break
            candidate = (candidate + 1) % self.max_cidrs
        self._next_candidate = (candidate + 1) % self.max_cidrs
        self._used.add(candidate)
        return self._cidr(candidate)

    def occupy(self, cidr: str) -> None:
        """Mark every block `cidr` overlaps as taken (a node's existing CIDR); idempotent."""
        self._used.update(self._indices(cidr))

    def release(self, cidr: str) -> None:
        """Mark every block `cidr` overlaps as free again; idempotent."""
        self._used.difference_update(self._indices(cidr))

    def is_used(self, cidr: str) -> bool:
        return all(i in self._used for i in self._indices(cidr))
