"""Drive `wrk` (the C load generator) with small Lua scripts, and read back its figures.

Python cannot generate thousands of TLS requests a second on 2 cores without
becoming the bottleneck, so creates, gets and etcd puts are driven by wrk.
Each script's `done()` prints one `WRKJSON {...}` line with the request
count, duration, latency percentiles and error counts, which `run` parses;
any non-2xx/3xx response or socket error is reported as an error.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WrkResult", "run", "create_script", "get_script", "etcd_put_script", "lua_string", "plain_get_script"]

# Prints the summary as one JSON line. Latencies are in microseconds.
_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

# Gives each wrk thread a number, `tid`, as a global of its own Lua state.
_SETUP = r"""
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
"""


def lua_string(value: str | bytes) -> str:
    """A Lua long-bracket-free string literal for `value` (every byte escaped as needed)."""
    raw = value.encode() if isinstance(value, str) else value
    out = []
    for b in raw:
        c = chr(b)
        if c.isalnum() or c in " -_./:{},[]@=+*#!?()<>|~^%&$'`;":
            out.append(c)
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def create_script(token: str, body_head: str, body_tail: str, name_prefix: str) -> str:
    """POSTs `body_head + <name_prefix>-<thread>-<n> + body_tail`: a unique object per request."""
    return _SETUP + f"""
local headers = {{["Authorization"] = {lua_string("Bearer " + token)},
                 ["Content-Type"] = "application/json"}}
local head, tail, prefix = {lua_string(body_head)}, {lua_string(body_tail)}, {lua_string(name_prefix)}
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("POST", nil, headers, head .. prefix .. "-" .. tid .. "-" .. counter .. tail)
end
""" + _DONE


def plain_get_script() -> str:
    """A plain `GET /` per request (wrk's default), with the summary line."""
    return _DONE


def get_script(token: str, path_format: str, count: int) -> str:
    """GETs `path_format % k` for k in 0..count-1 in turn, each thread from its own start; pre-built."""
    return _SETUP + f"""
local headers = {{["Authorization"] = {lua_string("Bearer " + token)}, ["Accept"] = "application/json"}}
local reqs = {{}}
local i = 0
function init(args)
  for k = 0, {count - 1} do reqs[k + 1] = wrk.format("GET", string.format({lua_string(path_format)}, k), headers) end
  i = (tid * 7919) % #reqs
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
""" + _DONE


def etcd_put_script(key_prefix: str, value: bytes) -> str:
    """`POST /v3/kv/put` (etcd's gRPC gateway) with a unique base64 key per request and a fixed value."""
    value_b64 = base64.b64encode(value).decode()
    return _SETUP + f"""
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {{}}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1) ..
      (b and b64chars:sub(c3 + 1, c3 + 1) or "=") .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end
local headers = {{["Content-Type"] = "application/json"}}
local prefix, value = {lua_string(key_prefix)}, {lua_string(value_b64)}
local counter = 0
function request()
  counter = counter + 1
  local key = b64(prefix .. "/" .. tid .. "/" .. counter)
  return wrk.format("POST", nil, headers, '{{"key":"' .. key .. '","value":"' .. value .. '"}}')
end
""" + _DONE


@dataclass
class WrkResult:
    """What one wrk run measured."""

    label: str
    threads: int
    connections: int
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    raw: str

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict:
        return {"label": self.label, "threads": self.threads, "connections": self.connections,
                "requests": self.requests, "duration_s": round(self.duration_s, 3),
                "rate_per_s": round(self.rate, 1), "errors": self.errors,
                "latency_ms": {k: round(v / 1000, 3) for k, v in self.latency_us.items()}}


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    return path


def run(label: str, url: str, script: str, *, threads: int, connections: int, duration: float,
        timeout_s: float = 10.0, prefix: tuple[str, ...] = ()) -> WrkResult:
    """Run wrk for `duration` seconds with `script`; raise if wrk itself fails. `prefix` runs it through
    another command (`nsenter --net=FILE`: from inside a pod's network namespace)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        script_path = Path(f.name)
    try:
        cmd = [*prefix, wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               f"--timeout={timeout_s:g}s", "-s", str(script_path), url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout_s + 60)
    finally:
        script_path.unlink(missing_ok=True)
    out = proc.stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({label}, exit {proc.returncode}):\n{out}\n{proc.stderr}")
    data = json.loads(line[len("WRKJSON "):])
    return WrkResult(label, threads, connections, data["requests"], data["duration_us"] / 1e6,
                     data["errors"], data["latency_us"], out)
