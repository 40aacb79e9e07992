"""The `timoner` command: run the API server alone, or a whole cluster with `up`.

`timoner server` runs only the API server. `timoner up` runs a whole
single-node cluster in one process: API server, controller manager,
scheduler and node agent (process runtime; its containers are stopped when
`up` stops). Both print one line containing `ready` once the server
answers, then the `export KUBECONFIG=...` line. `timoner controllers`,
`timoner scheduler` and `timoner agent` run one part against any API server
named by a kubeconfig.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from timoner import __version__

from ._network import add_network_flags, ipv4_cidr, node_port_range

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="timoner", description="A Kubernetes-compatible orchestrator.")
    parser.add_argument("--version", action="version", version=f"timoner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("server", "run the API server"), ("up", "run a whole single-node cluster")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--data-dir", required=True, type=Path, help="where state, PKI and kubeconfig live")
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=6443, help="port to listen on (default 6443; 0 = any)")
        p.add_argument("--storage", default="sqlite", help="sqlite (default), memory, or a backend URL")
        p.add_argument("--service-cidr", type=ipv4_cidr, default="100.65.0.0/16", help="Service cluster IP range")
        p.add_argument("--service-node-port-range", type=node_port_range, default=(30000, 32767),
                       metavar="LOW-HIGH", help="NodePort range (default 30000-32767)")
        if name == "up":
            p.add_argument("--cluster-cidr", type=ipv4_cidr, default="100.64.0.0/16",
                           help="the pods' addresses; each node gets a /24 of it (default 100.64.0.0/16)")
            p.add_argument("--shutdown-grace-period", type=_non_negative, default=10, metavar="SECONDS",
                           help="on exit, how long containers get between SIGTERM and SIGKILL (default 10)")
            add_network_flags(p)
        p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    ctrl = sub.add_parser("controllers", help="run the controller manager (Deployments, ReplicaSets, ...)")
    ctrl.add_argument("--kubeconfig", required=True, type=Path, help="how to reach the API server")
    ctrl.add_argument("--terminated-pod-gc-threshold", type=int, default=12500,
                      help="finished pods kept before the oldest are deleted (default 12500; 0 = never)")
    ctrl.add_argument("--metrics-port", type=_non_negative, default=0,
                      help="serve reconcile counters at http://127.0.0.1:PORT/metrics (default 0 = off)")
    ctrl.add_argument("--cluster-cidr", default="100.64.0.0/16",
                      help="the pods' addresses, from which each Node gets its spec.podCIDR (default 100.64.0.0/16)")
    ctrl.add_argument("--node-cidr-mask-size", type=int, default=24,
                      help="the size of each Node's pod CIDR within --cluster-cidr (default 24)")
    ctrl.add_argument("--max-endpoints-per-slice", type=int, default=100,
                      help="endpoints in one EndpointSlice, 1 to 1000 (default 100)")
    ctrl.add_argument("-v", "--verbose", action="count", default=0)
    sched = sub.add_parser("scheduler", help="run the scheduler (binds pending pods to nodes)")
    sched.add_argument("--kubeconfig", required=True, type=Path, help="how to reach the API server")
    sched.add_argument("--scheduler-name", default="default-scheduler")
    sched.add_argument("-v", "--verbose", action="count", default=0)
    agent = sub.add_parser("agent", help="run the node agent (registers a Node, heartbeats, watches its pods)")
    agent.add_argument("--kubeconfig", required=True, type=Path, help="how to reach the API server")
    agent.add_argument("--node-name", default=None, help="the Node's name (default: the host name)")
    agent.add_argument("--runtime", default="process", choices=("process", "hollow"))
    agent.add_argument("--root-dir", type=Path, default=None, help="the agent's state directory")
    agent.add_argument("--port", type=int, default=10250, help="the node server's port (0 = any)")
    agent.add_argument("--max-pods", type=_non_negative, default=110,
                       help="pods this node can run: its pods capacity (default 110, as kubelet's)")
    add_network_flags(agent)
    agent.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


async def _all(*coros) -> None:
    """Run `coros` together; the first to fail cancels the others."""
    async with asyncio.TaskGroup() as group:
        for coro in coros:
            group.create_task(coro)


async def _until_signalled(coro) -> int:
    """Run a component until SIGINT/SIGTERM, then cancel it cleanly."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    return 0


async def _run(args: argparse.Namespace) -> int:
    if args.command == "scheduler":
        from timoner.scheduler import main as scheduler_main

        print(f"timoner scheduler: starting as {args.scheduler_name}", flush=True)
        return await _until_signalled(scheduler_main(args.kubeconfig, scheduler_name=args.scheduler_name))
    if args.command == "controllers":
        from timoner.controllers import main as controllers_main

        print("timoner controllers: starting (waiting for the leader lease)", flush=True)
        return await _until_signalled(controllers_main(
            args.kubeconfig, terminated_pod_gc_threshold=args.terminated_pod_gc_threshold,
            metrics_port=args.metrics_port, cluster_cidr=args.cluster_cidr,
            node_cidr_mask_size=args.node_cidr_mask_size, max_endpoints_per_slice=args.max_endpoints_per_slice))
    if args.command == "agent":
        from timoner.node.agent import main as agent_main
        from timoner.node.config import default_root_dir
        from timoner.node.pods import PodWorkerConfig

        from ._network import fallback_message, pod_network

        network = pod_network(args, runtime=args.runtime, root_dir=args.root_dir or default_root_dir())
        pod_config = PodWorkerConfig(host_network_fallback=fallback_message(args, runtime=args.runtime))
        print(f"timoner agent: starting (runtime {args.runtime}, pod network: "
              f"{f'bridge {network.bridge}' if network else 'host'})", flush=True)
        parts = [agent_main(args.kubeconfig, node_name=args.node_name, runtime=args.runtime, root_dir=args.root_dir,
                            port=args.port, max_pods=args.max_pods, pod_network=network, pod_config=pod_config)]
        if network is not None:
            from ._network import serve_node_network

            parts.append(serve_node_network(args.kubeconfig, network, node_name=args.node_name, cleanup_on_exit=False,
                                            ingress_ports=args.ingress_ports, proxy_mode=args.proxy_mode))
        return await _until_signalled(_all(*parts))
    # Imported here, not at the top: `timoner agent`, `scheduler` and `controllers` never load the API
    # server (uvicorn, protobuf, SQLite), which would cost each of them ~9 MB of memory for nothing.
    from timoner.apiserver.server import APIServer, ServerConfig

    config = ServerConfig(data_dir=args.data_dir.resolve(), host=args.host, port=args.port,
                          storage=args.storage, service_cidr=args.service_cidr,
                          service_node_port_range=args.service_node_port_range)
    server = APIServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parts: list[asyncio.Task] = []
    network = None
    if args.command == "up":
        # The rest of a one-node cluster, in this process, talking to the server through its kubeconfig.
        from timoner.controllers import main as controllers_main
        from timoner.node.agent import main as agent_main
        from timoner.node.pods import PodWorkerConfig
        from timoner.scheduler import main as scheduler_main

        from ._network import fallback_message, pod_network

        agent_dir = config.data_dir / "agent"
        network = pod_network(args, runtime="process", root_dir=agent_dir)
        pod_config = PodWorkerConfig(host_network_fallback=fallback_message(args, runtime="process"))
        parts.append(asyncio.create_task(controllers_main(server.kubeconfig, cluster_cidr=args.cluster_cidr),
                                         name="controllers"))
        parts.append(asyncio.create_task(scheduler_main(server.kubeconfig), name="scheduler"))
        parts.append(asyncio.create_task(agent_main(
            server.kubeconfig, runtime="process", root_dir=agent_dir, port=0, stop_containers_on_exit=True,
            shutdown_grace=args.shutdown_grace_period, pod_network=network, pod_config=pod_config), name="agent"))
        if network is not None:
            from ._network import serve_node_network

            parts.append(asyncio.create_task(serve_node_network(server.kubeconfig, network, node_name=None,
                                                                cleanup_on_exit=True,
                                                                ingress_ports=args.ingress_ports,
                                                                proxy_mode=args.proxy_mode),
                                             name="node-network"))
    what = "API server, controller manager, scheduler and node agent" if parts else "API server"
    print(f"timoner {args.command}: {what} ready at {server.url} (storage: {args.storage})", flush=True)
    print(f"export KUBECONFIG={server.kubeconfig}", flush=True)
    await stop.wait()
    print("timoner: shutting down", flush=True)
    for part in parts:
        part.cancel()
    for part in parts:
        try:
            await part
        except (asyncio.CancelledError, Exception):
            pass
    if network is not None:
        from ._network import release

        try:
            await release(network)
        except Exception as exc:  # a leftover bridge is reused by the next `up`
            print(f"timoner: could not remove the pod network: {exc}", flush=True)
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        return uvloop.run(_run(args))
    except ImportError:
        return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
