"""The processes under test: a `timoner server` and an `etcd`, each on loopback in a temp directory.

Both are started as subprocesses with their output in a log file, waited
for until they answer, and stopped with SIGTERM (SIGKILL after a grace
period). `rss_kib` reads a process's resident set from `/proc/<pid>/status`.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["TimonerServer", "Etcd", "alive", "rss_kib", "free_port", "StartError"]

_READY = re.compile(r"API server ready at (https?://\S+)")


class StartError(RuntimeError):
    """A process under test did not come up."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return state[state.rindex(b")") + 2:][:1] != b"Z"


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """`field` (VmRSS, VmHWM, ...) of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen | None, grace: float = 10.0) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


class TimonerServer:
    """`timoner server --port 0` on a fresh data dir; `url`, `token`, `ca_file` once started."""

    def __init__(self, workdir: Path, *, storage: str = "sqlite") -> None:
        self.data_dir = workdir / "timoner"
        self.log = workdir / "timoner.log"
        self.storage = storage
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def ca_file(self) -> str:
        return str(self.data_dir / "pki" / "ca.crt")

    @property
    def server_cert(self) -> Path:
        return self.data_dir / "pki" / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.data_dir / "pki" / "apiserver.key"

    @property
    def token(self) -> str:
        return (self.data_dir / "pki" / "admin.token").read_text().strip()

    def command(self) -> list[str]:
        script = Path(sys.executable).parent / "timoner"
        head = [str(script)] if script.exists() else [sys.executable, "-m", "timoner.cli.main"]
        return head + ["server", "--data-dir", str(self.data_dir), "--port", "0", "--storage", self.storage]

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _READY.search(self.log.read_text(errors="replace"))
            if m:
                self.url = m.group(1)
                return
            if self.proc.poll() is not None:
                raise StartError(f"timoner server exited with {self.proc.returncode}:\n{_tail(self.log)}")
            time.sleep(0.05)
        _stop(self.proc)
        raise StartError(f"timoner server not ready after {timeout:g}s:\n{_tail(self.log)}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self.exit_code = _stop(self.proc)

    def log_tail(self, n: int = 30) -> str:
        return _tail(self.log, n)

    def log_problems(self) -> list[str]:
        """Lines of the server log that look like errors or tracebacks."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines()
                if re.search(r"ERROR|Traceback|Exception|CRITICAL", ln)]

    def check_stopped(self, errors: list[str], results: dict) -> None:
        """After `stop()`: a failed exit on SIGTERM and error lines in the log are errors of the run."""
        if self.exit_code not in (0, None):
            errors.append(f"timoner server exited with {self.exit_code} on SIGTERM")
        problems = self.log_problems()
        if problems:
            errors.append(f"timoner server log has {len(problems)} error lines, first: {problems[0]}")
            results["server_log_errors"] = problems[:20]


class Etcd:
    """Debian's `etcd` on loopback: a plain HTTP client URL and, given a cert, an HTTPS one too."""

    def __init__(self, workdir: Path, *, cert: Path | None = None, key: Path | None = None) -> None:
        self.data_dir = workdir / "etcd"
        self.log = workdir / "etcd.log"
        self.cert, self.key = cert, key
        self.http_url = f"http://127.0.0.1:{free_port()}"
        self.https_url = f"https://127.0.0.1:{free_port()}" if cert and key else ""
        self.peer_url = f"http://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def binary() -> str:
        path = shutil.which("etcd")
        if path is None:
            raise StartError("etcd is not installed (Debian: apt-get install -y etcd-server)")
        return path

    def version(self) -> str:
        out = subprocess.run([self.binary(), "--version"], capture_output=True, text=True).stdout
        m = re.search(r"etcd Version:\s*(\S+)", out)
        return m.group(1) if m else "?"

    def start(self, timeout: float = 30.0) -> None:
        client_urls = ",".join(u for u in (self.http_url, self.https_url) if u)
        cmd = [self.binary(), "--name", "bench", "--data-dir", str(self.data_dir),
               "--listen-client-urls", client_urls, "--advertise-client-urls", self.http_url,
               "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
               "--initial-cluster", f"bench={self.peer_url}", "--initial-cluster-state", "new",
               "--logger", "zap", "--log-level", "warn"]
        if self.https_url:
            cmd += ["--cert-file", str(self.cert), "--key-file", str(self.key)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        pending = [u for u in (self.http_url, self.https_url) if u]
        while time.monotonic() < deadline and pending:
            if self.proc.poll() is not None:
                raise StartError(f"etcd exited with {self.proc.returncode}:\n{_tail(self.log)}")
            try:
                url = pending[0]
                with urllib.request.urlopen(url + "/health", timeout=2,
                                            context=ctx if url.startswith("https") else None) as r:
                    if b'"health":"true"' in r.read():
                        pending.pop(0)
                        continue
            except OSError:
                pass
            time.sleep(0.1)
        if pending:
            _stop(self.proc)
            raise StartError(f"etcd not healthy after {timeout:g}s:\n{_tail(self.log)}")

    def stop(self) -> None:
        _stop(self.proc)
