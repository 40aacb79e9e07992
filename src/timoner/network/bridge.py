"""The pod network on one node: a Linux bridge, a veth pair and a network namespace per pod.

What the CNI `bridge` plugin with `host-local` IPAM does for a kubelet, done
with iproute2 (`ip`) and nftables (`nft`), which need root:

- `init(pod_cidr)` makes the bridge (`timoner0` by default) with the
  CIDR's first address as the pods' gateway, turns on IPv4 forwarding and
  `bridge-nf-call-iptables` (so traffic between two pods of one bridge
  passes the service proxy's rules), and masquerades what pods send
  off the node (an nftables table of its own, `timoner-pods`).
- `setup(pod_uid)` gives a pod its network namespace (`ip netns add`, so
  it is the file `/run/netns/<prefix><uid>`), a veth whose pod end is `eth0`
  with the next free address of the CIDR and a default route through the
  gateway, and `lo` up. It is idempotent: a pod that has its namespace and
  address keeps them, which is how an agent restarted beside running pods
  finds them again.
- `teardown(pod_uid)` deletes the namespace (the kernel removes the veth
  with it) and frees the address. Pod ports are in hairpin mode, so a pod
  reaching itself through a Service's address gets its own packets back.

Addresses are kept as host-local keeps them: one file per address in use,
`<state_dir>/ips/<ip>`, holding the pod's uid, so they survive the agent.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BridgeNetwork", "NetworkError", "PodInterface"]

log = logging.getLogger("timoner.network.bridge")


class NetworkError(RuntimeError):
    """A pod's network could not be made (shown as FailedCreatePodSandBox)."""


@dataclass(frozen=True, slots=True)
class PodInterface:
    """A pod's place on the pod network: its address and the file of its network namespace."""

    ip: str
    netns: str


class BridgeNetwork:
    """See the module docstring. `ip`/`nft` are the commands to run (tests prefix `ip netns exec NS`)."""

    def __init__(self, state_dir: Path, *, bridge: str = "timoner0", nft_table: str = "timoner-pods",
                 netns_prefix: str = "timoner-", ip: tuple[str, ...] = ("ip",), nft: tuple[str, ...] = ("nft",),
                 netns_dir: Path = Path("/run/netns"), sysctl_root: Path = Path("/proc/sys")) -> None:
        if len(bridge) > 15:
            raise ValueError(f"bridge name {bridge!r} is longer than 15 characters")
        self.state_dir = state_dir
        self.bridge = bridge
        self.nft_table = nft_table
        self.netns_prefix = netns_prefix
        self._ip = ip
        self._nft = nft
        self._netns_dir = netns_dir
        self._sysctl_root = sysctl_root
        self._ips_dir = state_dir / "ips"
        self._lock = asyncio.Lock()
        self.network: ipaddress.IPv4Network | None = None
        self.ready = asyncio.Event()  # set once `init` made the bridge: `gateway` is known

    @property
    def gateway(self) -> str:
        """The bridge's address: the pods' default route, and where node-local services listen for them."""
        if self.network is None:
            raise NetworkError("the pod network has no pod CIDR yet")
        return str(self.network.network_address + 1)

    # -- the node's part ---------------------------------------------------------------------------

    async def init(self, pod_cidr: str) -> None:
        """Make the bridge and the masquerade rule for `pod_cidr` (the Node's `spec.podCIDR`); idempotent."""
        network = ipaddress.ip_network(pod_cidr)
        if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > 30:
            raise NetworkError(f"pod CIDR {pod_cidr} must be IPv4 with room for pods (a prefix of /30 or shorter)")
        self.network = network
        await asyncio.to_thread(self._ips_dir.mkdir, parents=True, exist_ok=True)
        gateway = f"{self.gateway}/{network.prefixlen}"
        if await self._run(*self._ip, "link", "show", self.bridge, check=False) != 0:
            await self._run(*self._ip, "link", "add", self.bridge, "type", "bridge")
        addresses = await self._output(*self._ip, "-4", "-o", "addr", "show", "dev", self.bridge)
        if gateway not in addresses.split():
            await self._run(*self._ip, "addr", "replace", gateway, "dev", self.bridge)
        await self._run(*self._ip, "link", "set", self.bridge, "up")
        self._sysctl("net/ipv4/ip_forward", "1")
        self._sysctl("net/bridge/bridge-nf-call-iptables", "1", optional=True)
        await self._apply_nft(f"""
table ip {self.nft_table}
delete table ip {self.nft_table}
table ip {self.nft_table} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {network} ip daddr != {network} oifname != "{self.bridge}" masquerade
    }}
}}
""")
        self.ready.set()

    async def cleanup(self) -> None:
        """Remove the bridge and the masquerade table (pods' namespaces must be torn down first)."""
        await self._run(*self._ip, "link", "del", self.bridge, check=False)
        await self._apply_nft(f"table ip {self.nft_table}\ndelete table ip {self.nft_table}\n", check=False)

    # -- a pod's part ------------------------------------------------------------------------------

    def netns_path(self, pod_uid: str) -> str:
        return str(self._netns_dir / f"{self.netns_prefix}{pod_uid}")

    def pods(self) -> set[str]:
        """The uids of the pods that have an address."""
        return {uid for _ip, uid in self._allocations()}

    async def setup(self, pod_uid: str) -> PodInterface:
        if self.network is None:
            raise NetworkError("the pod network is not ready: the node has no pod CIDR yet")
        async with self._lock:
            ip = self._ip_of(pod_uid) or self._allocate(pod_uid)
            name = f"{self.netns_prefix}{pod_uid}"
            netns = self.netns_path(pod_uid)
            address = f"{ip}/{self.network.prefixlen}"
            try:
                if _exists(netns):  # an agent restarted beside the pod, or one that died half-way
                    current = await self._output(*self._ip, "-n", name, "-4", "-o", "addr", "show", "dev",
                                                 "eth0", check=False)
                    if address in current.split():
                        return PodInterface(ip, netns)
                    await self._run(*self._ip, "link", "del", host_veth(pod_uid), check=False)
                    await self._wire(pod_uid, name, address, fresh=False)
                else:
                    await self._wire(pod_uid, name, address, fresh=True)
            except NetworkError:
                await self._forget(pod_uid, name)
                raise
            return PodInterface(ip, netns)

    async def _wire(self, pod_uid: str, name: str, address: str, *, fresh: bool) -> None:
        """Two `ip -batch` runs: the host's side (with the namespace itself when `fresh`), then the pod's."""
        veth = host_veth(pod_uid)
        host_side = [
            f"link add {veth} type veth peer name eth0 netns {name}",
            f"link set {veth} master {self.bridge}",
            # Hairpin, as CNI's hairpinMode: a pod reaching itself through a Service IP gets its packet back.
            f"link set {veth} type bridge_slave hairpin on",
            f"link set {veth} up",
        ]
        try:
            await self._batch(self._ip, [*([f"netns add {name}"] if fresh else []), *host_side])
        except NetworkError:
            if await self._run(*self._ip, "link", "show", self.bridge, check=False) == 0:
                raise
            log.warning("the bridge %s is gone: making it again", self.bridge)
            await self.init(str(self.network))
            await self._run(*self._ip, "link", "del", veth, check=False)
            await self._batch(self._ip, [*([] if _exists(self.netns_path(pod_uid)) else [f"netns add {name}"]),
                                         *host_side])
        await self._batch((*self._ip, "-n", name), [
            "link set lo up",
            f"addr add {address} dev eth0",
            "link set eth0 up",
            f"route add default via {self.gateway}",
        ])

    async def teardown(self, pod_uid: str) -> None:
        async with self._lock:
            await self._forget(pod_uid, f"{self.netns_prefix}{pod_uid}")

    async def _forget(self, pod_uid: str, name: str) -> None:
        if _exists(self.netns_path(pod_uid)):
            await self._run(*self._ip, "netns", "del", name, check=False)
        await self._run(*self._ip, "link", "del", host_veth(pod_uid), check=False)
        for ip, uid in self._allocations():
            if uid == pod_uid:
                (self._ips_dir / ip).unlink(missing_ok=True)

    # -- addresses (host-local style) --------------------------------------------------------------

    def _allocations(self) -> list[tuple[str, str]]:
        try:
            entries = list(os.scandir(self._ips_dir))
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            try:
                out.append((entry.name, Path(entry.path).read_text().strip()))
            except OSError:
                continue
        return out

    def _ip_of(self, pod_uid: str) -> str | None:
        for ip, uid in self._allocations():
            if uid == pod_uid and self.network is not None and ipaddress.ip_address(ip) in self.network:
                return ip
        return None

    def _allocate(self, pod_uid: str) -> str:
        assert self.network is not None
        taken = {ip for ip, _uid in self._allocations()}
        gateway = ipaddress.ip_address(self.gateway)
        for host in self.network.hosts():
            if host == gateway or str(host) in taken:
                continue
            try:
                fd = os.open(self._ips_dir / str(host), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(pod_uid)
            return str(host)
        raise NetworkError(f"no free address left in the pod CIDR {self.network}")

    # -- commands ----------------------------------------------------------------------------------

    def _sysctl(self, key: str, value: str, *, optional: bool = False) -> None:
        path = self._sysctl_root / key
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except FileNotFoundError:
            if not optional:
                raise NetworkError(f"cannot set {key.replace('/', '.')}: {path} does not exist") from None
        except OSError as exc:
            raise NetworkError(f"cannot set {key.replace('/', '.')}={value}: {exc.strerror}") from None

    async def _apply_nft(self, ruleset: str, *, check: bool = True) -> None:
        await self._run(*self._nft, "-f", "-", input=ruleset.encode(), check=check)

    async def _batch(self, command: tuple[str, ...], lines: list[str]) -> None:
        await self._run(*command, "-batch", "-", input="".join(line + "\n" for line in lines).encode())

    async def _run(self, *argv: str, input: bytes | None = None, check: bool = True) -> int:
        code, _out = await _exec(argv, input, check=check)
        return code

    async def _output(self, *argv: str, check: bool = True) -> str:
        _code, out = await _exec(argv, None, check=check)
        return out


def _exists(path: str) -> bool:
    return os.path.exists(path)  # a stat of a file under /run: not worth a thread


def host_veth(pod_uid: str) -> str:
    """The host end of a pod's veth: `veth` + 11 hex digits of its uid's hash (15 characters, the limit)."""
    return "veth" + hashlib.sha1(pod_uid.encode()).hexdigest()[:11]


async def _exec(argv: tuple[str, ...], input: bytes | None, *, check: bool) -> tuple[int, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        raise NetworkError(f"{argv[0]} is not installed (the pod network needs iproute2 and nftables)") from None
    out, err = await proc.communicate(input)
    code = proc.returncode if proc.returncode is not None else -1
    if check and code != 0:
        raise NetworkError(f"{' '.join(argv)}: {err.decode(errors='replace').strip() or f'exit {code}'}")
    return code, out.decode(errors="replace")
