"""How `timoner up` and `timoner agent` pick the pod network (the CLI wires `network` into `node`).

`--pod-network auto` (the default) gives pods their own network namespace on
a bridge when the agent can (root, the process runtime, `ip` and `nft` on
the PATH), else they share the host's network and say so in a pod
condition (`docs/NETWORKING.md`).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
from pathlib import Path

from timoner.network.bridge import BridgeNetwork

__all__ = ["add_network_flags", "fallback_message", "node_port_range", "pod_network"]


def node_port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        ports = (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want LOW-HIGH, like 30000-32767, not {text!r}") from None
    if not 1 <= ports[0] <= ports[1] <= 65535:
        raise argparse.ArgumentTypeError(f"want 1 <= LOW <= HIGH <= 65535, not {text!r}")
    return ports


def ingress_ports(text: str) -> tuple[int, int] | None:
    if text == "off":
        return None
    http, sep, https = text.partition(",")
    try:
        ports = (int(http), int(https))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want HTTP,HTTPS like 80,443 (or off), not {text!r}") from None
    if not sep or not all(0 <= p <= 65535 for p in ports):
        raise argparse.ArgumentTypeError(f"want HTTP,HTTPS like 80,443 (or off), not {text!r}")
    return ports


def ipv4_cidr(text: str) -> str:
    try:
        network = ipaddress.ip_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise argparse.ArgumentTypeError(f"want an IPv4 CIDR, not {text!r}")
    return str(network)


def add_network_flags(parser: argparse.ArgumentParser) -> None:
    """The agent-side flags, shared by `up` and `agent`."""
    parser.add_argument("--pod-network", choices=("auto", "bridge", "host"), default="auto",
                        help="auto (default): a network namespace per pod on a bridge when running as root, "
                             "else the host's network; bridge: insist on it; host: never")
    parser.add_argument("--bridge-name", default="timoner0",
                        help="the pods' bridge (default timoner0); its nftables tables are named after it")
    parser.add_argument("--proxy-mode", choices=("nftables", "userspace"), default="nftables",
                        help="how Services are served: nftables rules (default) or userspace forwarders")
    parser.add_argument("--ingress-ports", type=ingress_ports, default=(80, 443), metavar="HTTP,HTTPS",
                        help="where the built-in ingress controller listens (default 80,443; 'off' for none)")


def _can_bridge(runtime: str) -> str:
    """Why a bridge cannot be used here, or "" when it can."""
    if runtime != "process":
        return f"the {runtime} runtime runs no real containers"
    if os.geteuid() != 0:
        return "the node agent does not run as root"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (install iproute2 and nftables)"
    return ""


def pod_network(args: argparse.Namespace, *, runtime: str, root_dir: Path) -> BridgeNetwork | None:
    """The bridge network `--pod-network` asks for, or None for the host's network."""
    if args.pod_network == "host":
        return None
    why_not = _can_bridge(runtime)
    if why_not:
        if args.pod_network == "bridge":
            raise SystemExit(f"timoner: --pod-network bridge: {why_not}")
        return None
    bridge = args.bridge_name
    return BridgeNetwork(root_dir / "network", bridge=bridge, nft_table=f"{bridge}-nat", netns_prefix=f"{bridge}-")


def fallback_message(args: argparse.Namespace, *, runtime: str) -> str:
    """The pods' `timoner.dev/HostNetworkFallback` condition message when they share the host's network."""
    if runtime != "process":
        return ""
    if args.pod_network == "host":
        return "--pod-network host: pods share the node's network; give each pod its own ports"
    why_not = _can_bridge(runtime)
    return f"{why_not}: pods share the node's network; give each pod its own ports" if why_not else ""


async def release(network: BridgeNetwork) -> None:
    """Everything the pod network made on this host (for `timoner up`, whose cluster ends with it)."""
    for uid in network.pods():
        await network.teardown(uid)
    await network.cleanup()


async def serve_node_network(kubeconfig: Path, network: BridgeNetwork, *, node_name: str | None,
                             cleanup_on_exit: bool, ingress_ports: tuple[int, int] | None,
                             proxy_mode: str = "nftables") -> None:
    """Cluster DNS and the service proxy for the node whose pod network is `network`, until cancelled;
    `cleanup_on_exit` removes the Services' rules then (`timoner up`), else they stay (`timoner agent`)."""
    from timoner.client import Client, load_kubeconfig
    from timoner.network.node import NodeNetwork
    from timoner.node.config import default_node_name
    from timoner.node.machine import primary_ipv4

    name = node_name or default_node_name()
    async with Client(load_kubeconfig(kubeconfig), user_agent=f"timoner-network/{name}") as client:
        await NodeNetwork(client, node_name=name, node_ips=[primary_ipv4()], bridge=network,
                          proxy_table=f"{network.bridge}-services", cleanup_on_exit=cleanup_on_exit,
                          ingress_ports=ingress_ports, proxy_mode=proxy_mode).run()
