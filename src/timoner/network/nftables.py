"""The nftables data plane: a `RouteTable` as one `ip` table, applied in one `nft -f -` transaction.

The ruleset is laid out as kube-proxy's nftables mode lays out its
`ip kube-proxy` table:

- `nat-prerouting` and `nat-output` (hook priority -100, so traffic from pods
  and from processes on the node alike) jump to `services`, which looks the
  destination up in the `service-ips` verdict map (`ip . protocol . port`).
  Cluster IPs go to the service port's `service-…` chain (Cluster policy) or
  `local-…` chain (Local policy); node ports, external IPs and load balancer
  IPs to its `external-…` chain.
- A `service-…`/`local-…` chain first sends a client with ClientIP affinity
  back to its endpoint (`ip saddr @affinity-… goto endpoint-…`), then picks
  one with `numgen random mod N vmap { … }`. An `endpoint-…` chain marks
  hairpin traffic (the endpoint talking to itself) for masquerade, records
  the client in its affinity set (`update @affinity-… { ip saddr }`, the
  set's timeout being the affinity timeout) and DNATs.
- An `external-…` chain marks everything for masquerade (Cluster policy),
  or (Local policy) only traffic from the node itself, which goes to any
  endpoint; the rest keeps its source address and goes to the local
  endpoints, or is dropped when there are none. Node ports on 127.0.0.1 are
  traffic from the node itself, so they are always masqueraded (and need
  `route_localnet`, whence the rule dropping other machines' packets to
  127.0.0.0/8, as kube-proxy's iptables mode has it).
- `nat-postrouting` masquerades the marked packets (mark bit 0x4000).
- `filter-input`, `filter-forward` and `filter-output` (priority -110, before
  DNAT on output) look new connections up in `no-endpoint-services`, whose
  verdict rejects them (TCP reset, else ICMP port unreachable) or drops
  them; `cluster-ips-check` rejects traffic to a cluster IP on a port no
  service has.

`render(table, previous=...)` writes the whole table as nft commands. The
first time (`previous=None`) it deletes and recreates the table; afterwards
it declares every object again (`add` is idempotent), flushes every chain
and map, deletes the chains and sets the previous table had and this one has
not, and adds the rules and elements: one transaction either way, so
packets see the old ruleset or the new one, never a mix, and the affinity
sets (never flushed) keep their clients across updates.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .routes import Endpoint, RouteTable, ServiceRoute, Verdict

__all__ = ["SYSCTLS", "NftablesDataPlane", "NftablesError", "render", "write_sysctls"]

log = logging.getLogger("timoner.network.nftables")

MASQUERADE_MARK = "0x4000"
_NAME_MAX = 200  # nft names may be 255 bytes; a hash prefix keeps truncated ones unique

#: What the data plane needs of the kernel. The bridge setting exists only where br_netfilter is
#: loaded; it makes traffic between two pods of one bridge pass these rules (or replies would skip
#: the un-DNAT and the client would drop them).
SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.route_localnet": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
}
_OPTIONAL_SYSCTLS = frozenset({"net.bridge.bridge-nf-call-iptables"})


class NftablesError(RuntimeError):
    """`nft` refused a ruleset (nothing of it was applied) or could not run."""


def write_sysctls(settings: Mapping[str, str], *, root: Path = Path("/proc/sys")) -> None:
    """Write `net.ipv4.ip_forward`-style keys under `root`; the bridge key is skipped when absent.

    Only values that differ are written. /proc/sys/net belongs to the network
    namespace of the process writing it, so a namespace's settings are set by
    a process inside it (`ip netns exec`).
    """
    for key, value in settings.items():
        path = root.joinpath(*key.split("."))
        if key in _OPTIONAL_SYSCTLS and not path.exists():
            continue
        if path.read_text().strip() != value:
            path.write_text(f"{value}\n")


# -- names ------------------------------------------------------------------------------


def _hashed(prefix: str, base: str, salt: str = "") -> str:
    digest = base64.b32encode(hashlib.sha256((base + salt).encode()).digest()).decode()[:8]
    return f"{prefix}-{digest}-{base}"[:_NAME_MAX]


def _port_base(route: ServiceRoute) -> str:
    return f"{route.namespace}/{route.service}/{route.protocol.lower()}/{route.port_name}"


def _service_chain(route: ServiceRoute) -> str:
    return _hashed("service", _port_base(route))


def _local_chain(route: ServiceRoute) -> str:
    return _hashed("local", _port_base(route))


def _external_chain(route: ServiceRoute) -> str:
    return _hashed("external", _port_base(route))


def _endpoint_base(route: ServiceRoute, endpoint: Endpoint) -> str:
    return f"{_port_base(route)}__{endpoint.ip}/{endpoint.port}"


def _endpoint_chain(route: ServiceRoute, endpoint: Endpoint) -> str:
    return _hashed("endpoint", _endpoint_base(route, endpoint))


def _affinity_set(route: ServiceRoute, endpoint: Endpoint) -> str:
    # The timeout is part of the name: a set cannot change its timeout, so a new one means a new set.
    return _hashed("affinity", _endpoint_base(route, endpoint), f"@{route.affinity_timeout}")


# -- rendering --------------------------------------------------------------------------

_BASE_CHAINS = (
    ("nat-prerouting", "type nat hook prerouting priority -100; policy accept;"),
    ("nat-output", "type nat hook output priority -100; policy accept;"),
    ("nat-postrouting", "type nat hook postrouting priority 100; policy accept;"),
    ("filter-input", "type filter hook input priority -110; policy accept;"),
    ("filter-forward", "type filter hook forward priority -110; policy accept;"),
    ("filter-output", "type filter hook output priority -110; policy accept;"),
    ("filter-output-post-dnat", "type filter hook output priority -90; policy accept;"),
)

_FIXED_RULES: tuple[tuple[str, str], ...] = (
    ("nat-prerouting", "jump services"),
    ("nat-output", "jump services"),
    ("nat-postrouting", "jump masquerading"),
    # route_localnet lets 127.0.0.1 node ports work; it must not open 127/8 to other machines.
    ("filter-input", "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status & dnat == 0 drop"),
    ("filter-input", "ct state new jump service-endpoints-check"),
    ("filter-forward", "ct state new jump service-endpoints-check"),
    ("filter-forward", "ct state new jump cluster-ips-check"),
    ("filter-output", "ct state new jump service-endpoints-check"),
    ("filter-output-post-dnat", "ct state new jump cluster-ips-check"),
    ("services", "ip daddr . meta l4proto . th dport vmap @service-ips"),
    ("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services"),
    ("cluster-ips-check", "ip daddr @cluster-ips goto reject-chain"),
    ("mark-for-masquerade", f"meta mark set meta mark or {MASQUERADE_MARK}"),
    ("masquerading", f"meta mark & {MASQUERADE_MARK} == 0 return"),
    ("masquerading", f"meta mark set meta mark xor {MASQUERADE_MARK}"),
    ("masquerading", "masquerade fully-random"),
    ("reject-chain", "meta l4proto tcp reject with tcp reset"),
    ("reject-chain", "reject with icmp port-unreachable"),
)

_HELPER_CHAINS = ("services", "service-endpoints-check", "cluster-ips-check", "mark-for-masquerade",
                  "masquerading", "reject-chain")

_MAPS = (
    ("service-ips", "type ipv4_addr . inet_proto . inet_service : verdict;"),
    ("no-endpoint-services", "type ipv4_addr . inet_proto . inet_service : verdict;"),
)
_SETS = (("cluster-ips", "type ipv4_addr;"),)


@dataclass
class _Ruleset:
    """What one table consists of, in the order nft must see it."""

    chains: dict[str, list[str]] = field(default_factory=dict)  # name -> rules, in order
    affinity_sets: dict[str, int] = field(default_factory=dict)  # name -> timeout
    elements: dict[str, list[str]] = field(default_factory=dict)  # map or set -> elements

    def chain(self, name: str) -> list[str]:
        return self.chains.setdefault(name, [])


def _build(table: RouteTable) -> _Ruleset:
    out = _Ruleset()
    for name, _ in _BASE_CHAINS:
        out.chain(name)
    for name in _HELPER_CHAINS:
        out.chain(name)
    for chain, rule in _FIXED_RULES:
        out.chain(chain).append(rule)
    service_ips = out.elements.setdefault("service-ips", [])
    no_endpoints = out.elements.setdefault("no-endpoint-services", [])
    cluster_ips = out.elements.setdefault("cluster-ips", [])
    # Two services may claim one address and port (external IPs are not checked for clashes); a map
    # key twice would fail the whole transaction, so the first service in the table keeps it.
    claimed: set[str] = set()

    def claim(key: str) -> bool:
        if key in claimed:
            return False
        claimed.add(key)
        return True

    for route in table:
        proto = route.protocol.lower()
        has_external = bool(route.external_frontends)
        # The Cluster-policy chain serves cluster IPs (Cluster policy) and external traffic
        # (Cluster policy, or the node's own traffic under Local policy).
        if route.endpoints and (not route.internal_policy_local or has_external):
            _balance(out, route, _service_chain(route), route.endpoints)
        if route.local_endpoints and (route.internal_policy_local or
                                      (has_external and route.external_policy_local)):
            _balance(out, route, _local_chain(route), route.local_endpoints)

        internal_chain = _local_chain(route) if route.internal_policy_local else _service_chain(route)
        for frontend in route.cluster_frontends:
            key = f"{frontend.ip} . {proto} . {frontend.port}"
            cluster_ips.append(frontend.ip)
            if not claim(key):
                continue
            if route.internal_verdict is None:
                service_ips.append(f"{key} : goto {internal_chain}")
            else:
                no_endpoints.append(f"{key} : {_verdict(route.internal_verdict)}")

        if has_external:
            if route.endpoints:
                _external(out, route)
            for frontend in route.external_frontends:
                key = f"{frontend.ip} . {proto} . {frontend.port}"
                if not claim(key):
                    continue
                if route.endpoints:
                    service_ips.append(f"{key} : goto {_external_chain(route)}")
                else:
                    no_endpoints.append(f"{key} : {_verdict(Verdict.REJECT)}")
    out.elements["cluster-ips"] = sorted(set(cluster_ips))
    return out


def _verdict(verdict: Verdict) -> str:
    return "goto reject-chain" if verdict is Verdict.REJECT else "drop"


def _balance(out: _Ruleset, route: ServiceRoute, chain_name: str, endpoints: tuple[Endpoint, ...]) -> None:
    """A chain spreading new connections over `endpoints` (sticky per client with affinity)."""
    rules = out.chain(chain_name)
    for endpoint in endpoints:
        _endpoint(out, route, endpoint)
        if route.affinity_timeout is not None:
            rules.append(f"ip saddr @{_affinity_set(route, endpoint)} goto {_endpoint_chain(route, endpoint)}")
    choices = ", ".join(f"{i} : goto {_endpoint_chain(route, ep)}" for i, ep in enumerate(endpoints))
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {choices} }}")


def _endpoint(out: _Ruleset, route: ServiceRoute, endpoint: Endpoint) -> None:
    name = _endpoint_chain(route, endpoint)
    if name in out.chains:
        return
    rules = out.chain(name)
    # Hairpin: a pod reaching itself through its service must see another source address.
    rules.append(f"ip saddr {endpoint.ip} jump mark-for-masquerade")
    if route.affinity_timeout is not None:
        affinity = _affinity_set(route, endpoint)
        out.affinity_sets[affinity] = route.affinity_timeout
        rules.append(f"update @{affinity} {{ ip saddr }}")
    rules.append(f"meta l4proto {route.protocol.lower()} dnat to {endpoint.ip}:{endpoint.port}")


def _external(out: _Ruleset, route: ServiceRoute) -> None:
    rules = out.chain(_external_chain(route))
    if not route.external_policy_local:
        rules.append("jump mark-for-masquerade")
        rules.append(f"goto {_service_chain(route)}")
        return
    # Local policy keeps the client's address, except for the node's own traffic (its source is a
    # local address, maybe 127.0.0.1), which is masqueraded and may go to any endpoint.
    rules.append("fib saddr type local jump mark-for-masquerade")
    rules.append(f"fib saddr type local goto {_service_chain(route)}")
    if route.local_endpoints:
        rules.append(f"goto {_local_chain(route)}")
    else:
        rules.append("drop")


def render(table: RouteTable, *, name: str = "timoner", previous: RouteTable | None = None) -> str:
    """The nft commands that make table `ip <name>` carry `table`, as one transaction.

    With `previous` (the table the kernel has now, as last applied), the
    objects are updated in place and those that are gone deleted; without,
    the table is deleted and made again.
    """
    new = _build(table)
    lines = [f"add table ip {name}"]
    stale_chains: list[str] = []
    stale_sets: list[str] = []
    if previous is None:
        lines += [f"delete table ip {name}", f"add table ip {name}"]
    else:
        old = _build(previous)
        stale_chains = [c for c in old.chains if c not in new.chains]
        stale_sets = [s for s in old.affinity_sets if s not in new.affinity_sets]

    for set_name, timeout in new.affinity_sets.items():
        lines.append(f"add set ip {name} {set_name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}")
    for map_name, spec in _MAPS:
        lines.append(f"add map ip {name} {map_name} {{ {spec} }}")
    for set_name, spec in _SETS:
        lines.append(f"add set ip {name} {set_name} {{ {spec} }}")
    base = dict(_BASE_CHAINS)
    for chain in new.chains:
        hook = f" {{ {base[chain]} }}" if chain in base else ""
        lines.append(f"add chain ip {name} {chain}{hook}")

    if previous is not None:
        # Empty everything that may refer to something, then delete what is gone.
        for chain in [*new.chains, *stale_chains]:
            lines.append(f"flush chain ip {name} {chain}")
        for map_name, _ in _MAPS:
            lines.append(f"flush map ip {name} {map_name}")
        for set_name, _ in _SETS:
            lines.append(f"flush set ip {name} {set_name}")
        lines += [f"delete chain ip {name} {chain}" for chain in stale_chains]
        lines += [f"delete set ip {name} {set_name}" for set_name in stale_sets]

    for chain, rules in new.chains.items():
        lines += [f"add rule ip {name} {chain} {rule}" for rule in rules]
    for target, elements in new.elements.items():
        if elements:
            lines.append(f"add element ip {name} {target} {{ {', '.join(elements)} }}")
    return "\n".join(lines) + "\n"


# -- applying ---------------------------------------------------------------------------


class NftablesDataPlane:
    """Applies route tables to the `ip <table>` nftables table by running `nft -f -`.

    `nft` is the command to run (`("ip", "netns", "exec", ns, "nft")` applies
    inside a network namespace). The sysctls in `SYSCTLS` are written under
    `sysctl_root` before the first apply; None leaves them to whoever made the
    namespace. After a failed apply the next one recreates the table, since
    the kernel's state is then not known for sure.
    """

    def __init__(self, table: str = "timoner", nft: tuple[str, ...] = ("nft",), *,
                 sysctl_root: Path | None = Path("/proc/sys")) -> None:
        self.table = table
        self.nft = nft
        self.sysctl_root = sysctl_root
        self._applied: RouteTable | None = None
        self._sysctls_written = False

    async def apply(self, table: RouteTable) -> None:
        if self.sysctl_root is not None and not self._sysctls_written:
            write_sysctls(SYSCTLS, root=self.sysctl_root)
            self._sysctls_written = True
        text = render(table, name=self.table, previous=self._applied)
        self._applied = None
        await self._run(text)
        self._applied = table

    async def cleanup(self) -> None:
        """Remove the table (and with it every rule); fine when it does not exist."""
        self._applied = None
        await self._run(f"add table ip {self.table}\ndelete table ip {self.table}\n")

    async def _run(self, text: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.nft, "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise NftablesError(f"cannot run {self.nft[0]}: {exc}") from exc
        _, stderr = await proc.communicate(text.encode())
        if proc.returncode != 0:
            raise NftablesError(f"nft -f - failed ({proc.returncode}): {stderr.decode(errors='replace').strip()}")
