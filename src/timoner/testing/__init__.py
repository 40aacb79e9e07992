"""Test helpers: a real API server running in-process, on its own thread and event loop.

`ServerThread` starts an `APIServer` (memory or SQLite storage, HTTPS with a
fresh PKI in a temporary directory, a port picked by the OS) on a background
thread, so tests can drive it with blocking clients — the real `kubectl`
binary, the official `kubernetes` Python client — while it serves.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from timoner.apiserver.server import APIServer, ServerConfig

__all__ = ["KUBECTL", "NetworkSlot", "ServerThread", "TimonerUp", "processes_under", "remove_pod_network", "eventually", "http_client", "kubectl", "wait_until"]

KUBECTL = os.environ.get("TIMONER_KUBECTL", "/usr/bin/kubectl")


class ServerThread:
    """An API server on a background thread; use as a context manager or call start/stop."""

    def __init__(self, data_dir: Path, *, storage: str = "memory", port: int = 0) -> None:
        self.config = ServerConfig(data_dir=data_dir, port=port, storage=storage)
        self.server: APIServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.config.data_dir / "kubeconfig"

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> ServerThread:
        self._thread = threading.Thread(target=self._main, name="timoner-apiserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("API server did not start within 60 s")
        if self._error is not None:
            raise RuntimeError("API server failed to start") from self._error
        return self

    def _main(self) -> None:
        try:
            import uvloop

            self.loop = uvloop.new_event_loop()
        except ImportError:
            self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.server = APIServer(self.config)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()
        self._stopped.set()

    def call(self, coro, timeout: float = 30):
        """Run a coroutine on the server's loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._stopped.wait(30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real kubectl against `kubeconfig`; raises with its output when `check` and it fails."""
    full_env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}
    if env:
        full_env.update(env)
    proc = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def http_client(srv: ServerThread, *, timeout: float = 20, token: bool = True):
    """An httpx client for `srv` that trusts its CA and (unless `token=False`) sends the admin token."""
    import httpx

    assert srv.server is not None and srv.server.pki is not None
    pki = srv.server.pki
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    headers = {"Authorization": f"Bearer {pki.token()}"} if token else {}
    return httpx.Client(base_url=srv.url, verify=context, headers=headers, timeout=timeout)


async def eventually(check, timeout: float = 10.0, what: str = "condition"):
    """Call `check` (sync or async) until it returns something truthy; that value, or AssertionError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def wait_until(check, timeout: float = 60.0, what: str = "condition", interval: float = 0.2):
    """Blocking `eventually`: call `check` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


class TimonerUp:
    """`timoner up` (or `timoner server`) as a user runs it: a subprocess on `data_dir`, stopped with SIGTERM.

    `start()` returns once the command printed its `export KUBECONFIG=` line; `output` holds what it
    printed until then, and `tail()` the last lines it printed since (its log: show it when a test
    fails). Use as a context manager, or call `stop()` (which returns the exit code).

    Several `timoner up` run on one host at once in the test suite, so each gets a network slot of its
    own (`network_slot`): pod and service CIDRs, a NodePort range and a bridge no other one uses.
    """

    def __init__(self, data_dir: Path, *, command: str = "up", extra: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.command = command
        self.extra = extra
        self.slot: NetworkSlot | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""
        self.recent: collections.deque[str] = collections.deque(maxlen=400)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return kubectl(self.kubeconfig, *args, **kwargs)

    def start(self, timeout: float = 60) -> TimonerUp:
        network: tuple[str, ...] = ()
        if self.command == "up" and "--cluster-cidr" not in self.extra:
            # A cluster started again on the same data keeps its slot: its Services hold addresses of it.
            remembered = self.data_dir / ".test-network-slot"
            if self.slot is None:
                preferred = int(remembered.read_text()) if remembered.exists() else None
                self.slot = NetworkSlot.claim(preferred)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            remembered.write_text(str(self.slot.number))
            network = self.slot.up_flags()
        if self.command == "up" and "--shutdown-grace-period" not in self.extra:
            # A test cluster's containers (often `sleep` as PID 1, which ignores SIGTERM) need no grace at
            # the end of the module: 1 s instead of 10 keeps the suite's teardowns short.
            network += ("--shutdown-grace-period", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "timoner.cli.main", self.command, "--data-dir", str(self.data_dir),
             "--port", "0", *network, *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("export KUBECONFIG="):
                break
        self.output = "".join(lines)
        if not lines or not lines[-1].startswith("export KUBECONFIG="):
            self.stop()
            raise AssertionError(f"timoner {self.command} did not get ready:\n{self.output}")
        # Keep draining its output so that a chatty server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.recent.append(line)

    def tail(self, lines: int = 100) -> str:
        """The last `lines` lines the command printed after it got ready."""
        return "".join(list(self.recent)[-lines:])

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    raise
            return self.proc.returncode
        finally:
            if self.slot is not None:
                self.slot.release()
                self.slot = None

    def __enter__(self) -> TimonerUp:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class NetworkSlot:
    """One of 31 non-overlapping network setups for a test cluster, held with a lock file until released.

    Slot k (1-31): pods in 100.(64+2k).0.0/16, Services in 100.(65+2k).0.0/16, NodePorts 30000+64k to
    30063+64k, ingress HTTP and HTTPS on 20000+10k and 20001+10k, bridge `tmnr<k>`: all inside 100.64.0.0/10 (never a developer's private ranges) and clear
    of the defaults (100.64.0.0/16 and 100.65.0.0/16), so a cluster on the defaults can run beside.
    """

    DIRECTORY = Path("/tmp/timoner-test-network-slots")

    def __init__(self, number: int, fd: int) -> None:
        self.number = number
        self._fd: int | None = fd

    @classmethod
    def claim(cls, preferred: int | None = None) -> NetworkSlot:
        import fcntl

        cls.DIRECTORY.mkdir(parents=True, exist_ok=True)
        numbers = list(range(1, 32))
        if preferred in numbers:
            numbers.insert(0, numbers.pop(numbers.index(preferred)))
        for number in numbers:
            fd = os.open(cls.DIRECTORY / f"{number}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return cls(number, fd)
        raise AssertionError("all 31 test network slots are taken")

    @property
    def cluster_cidr(self) -> str:
        return f"100.{64 + 2 * self.number}.0.0/16"

    @property
    def service_cidr(self) -> str:
        return f"100.{65 + 2 * self.number}.0.0/16"

    @property
    def node_ports(self) -> tuple[int, int]:
        return 30000 + 64 * self.number, 30063 + 64 * self.number

    @property
    def ingress_ports(self) -> tuple[int, int]:
        return 20000 + 10 * self.number, 20001 + 10 * self.number

    @property
    def bridge(self) -> str:
        return f"tmnr{self.number}"

    def up_flags(self) -> tuple[str, ...]:
        low, high = self.node_ports
        http, https = self.ingress_ports
        return ("--cluster-cidr", self.cluster_cidr, "--service-cidr", self.service_cidr,
                "--service-node-port-range", f"{low}-{high}", "--bridge-name", self.bridge,
                "--ingress-ports", f"{http},{https}")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def processes_under(directory: Path) -> list[int]:
    """Live processes whose working directory is under `directory`, or whose command line names it."""
    found, prefix = [], str(directory)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone, or a zombie
        if cwd.startswith(prefix) or prefix.encode() in cmdline:
            found.append(int(entry))
    return found


def remove_pod_network(bridge: str) -> None:
    """What a standalone `timoner agent` on `bridge` leaves for its next start: pod namespaces, the bridge,
    its nftables tables (`timoner up` removes its own when it stops)."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else ():
        if name.startswith(f"{bridge}-"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", f"{bridge}-svc"], capture_output=True, check=False)
    for table in (f"{bridge}-nat", f"{bridge}-services"):
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True, check=False)
