"""Handlers: the actions probes and lifecycle hooks run against one container, with the kubelet's outcomes and words.

- `probe_action(probe, target, timeout=...)`: one try of a probe's
  `exec`, `httpGet` or `tcpSocket`, as upstream's `prober.probe`:
  Success, Warning (an HTTP redirect to another host, not followed) or
  Failure with the output upstream prints (`HTTP probe failed with
  statuscode: 500`, `dial tcp 127.0.0.1:81: connect: connection refused`,
  `command "sleep 5" timed out`, or the command's own output). An exec that
  runs out of time is a Failure, as upstream since 1.20. A probe that
  cannot be run at all (no such named port, a runtime without exec, a
  `grpc` probe, which this node does not implement) raises
  `HandlerError`: upstream throws such a result away.
- `hook_action(handler, target, ...)`: a `postStart`/`preStop` handler
  (`exec`, `httpGet`, `sleep`); raises `HandlerError` with upstream's
  message when it fails. As upstream, an HTTP hook fails only when no
  response comes, whatever its status code, and an exec hook has no time
  limit of its own (the caller bounds it).

HTTP goes through one `httpx.AsyncClient` the caller owns (no TLS
verification, no proxies from the environment, no keep-alive), with
upstream's `User-Agent: kube-probe/1.32` and `Accept: */*` unless the
probe's `httpHeaders` set them. Redirects are followed by hand, as Go's
client with upstream's checker: only to the same host name, at most 10.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from timoner.client import Clock

from ..config import KUBELET_VERSION
from ..runtime import ContainerID, ExecRuntime, Runtime

__all__ = [
    "HandlerError",
    "Outcome",
    "ProbeResult",
    "Target",
    "extract_port",
    "hook_action",
    "new_http_client",
    "probe_action",
    "probe_url",
]

_MAJOR_MINOR = ".".join(KUBELET_VERSION.lstrip("v").split(".")[:2])  # upstream's `<major>.<minor>`
PROBE_USER_AGENT = f"kube-probe/{_MAJOR_MINOR}"
HOOK_USER_AGENT = f"kube-lifecycle/{_MAJOR_MINOR}"
MAX_OUTPUT = 10 * 1024  # upstream keeps the first 10 KiB of a probe's output or body
MAX_REDIRECTS = 10

Obj = dict[str, Any]


class Outcome(enum.Enum):
    SUCCESS = "Success"
    WARNING = "Warning"  # counts as success; upstream records a ProbeWarning event
    FAILURE = "Failure"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One try of a probe: its outcome and the output upstream puts in events."""

    outcome: Outcome
    output: str = ""


class HandlerError(Exception):
    """The action could not be run (a probe that errored), or a hook failed; the message is upstream's."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a handler acts on: one running container of a pod, and how to reach it."""

    runtime: Runtime
    container_id: ContainerID
    container: Mapping[str, Any]  # the pod's container spec: its ports name the named ports
    pod_ip: str
    http: httpx.AsyncClient


def new_http_client() -> httpx.AsyncClient:
    """The client probes and hooks share: unverified TLS, no environment proxies, a fresh connection each time."""
    # No timeout of its own: each caller bounds its requests (a probe's timeoutSeconds, a preStop's grace period).
    return httpx.AsyncClient(verify=False, trust_env=False, follow_redirects=False, timeout=None,
                             limits=httpx.Limits(max_keepalive_connections=0))


def extract_port(port: int | str | None, container: Mapping[str, Any]) -> int:
    """Upstream's `extractPort`: a number, a named `containerPort`, or a number written as a string."""
    number = -1
    if isinstance(port, int):
        number = port
    elif isinstance(port, str):
        named = [p.get("containerPort") for p in container.get("ports") or () if p.get("name") == port]
        if named and isinstance(named[0], int):
            number = named[0]
        else:
            try:
                number = int(port)
            except ValueError:
                # Upstream's last try reads the name as a number, and that error is the one it reports.
                raise HandlerError(f'strconv.Atoi: parsing "{port}": invalid syntax') from None
    if 0 < number < 65536:
        return number
    raise HandlerError(f"invalid port number: {number}")


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probe_url(scheme: str, host: str, port: int, path: str) -> str:
    """Upstream's `formatURL`: the path may carry a query; a missing leading `/` is added."""
    parsed = urllib.parse.urlsplit(path or "")
    if parsed.scheme or parsed.netloc:  # not a path at all: upstream keeps the text as the path
        parsed = urllib.parse.SplitResult("", "", path, "", "")
    route = parsed.path if parsed.path.startswith("/") else "/" + parsed.path
    return urllib.parse.urlunsplit((scheme.lower(), _join_host_port(host, port), route, parsed.query, ""))


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # close enough to Go's %q for what commands contain


# -- exec ------------------------------------------------------------------------------------------


async def _collect(session: Any, limit: int) -> str:
    """The session's stdout and stderr, interleaved, the first `limit` bytes kept (the rest drained)."""
    kept = bytearray()
    async for _, chunk in session.output():
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return kept.decode("utf-8", errors="replace")


async def _exec(target: Target, command: list[str], timeout: float | None) -> tuple[int | None, str]:
    """Run `command` in the container: (exit code, output), or (None, "") when out of time."""
    runtime = target.runtime
    if not isinstance(runtime, ExecRuntime):
        raise HandlerError(f"the {runtime.name} runtime cannot run commands in containers")
    try:
        session = await runtime.exec(target.container_id, tuple(command))
    except Exception as exc:  # the container went away, nsenter is missing...
        raise HandlerError(f"failed to exec in container: {exc}") from exc
    output = asyncio.create_task(_collect(session, MAX_OUTPUT))
    try:
        async with asyncio.timeout(timeout):
            code = await session.wait()
            text = await output
        return code, text
    except TimeoutError:
        # The ExecSession protocol has no way to end a command; the process runtime's sessions can.
        kill = getattr(session, "kill", None)
        if callable(kill):
            kill()
        return None, ""
    finally:
        output.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await output


# -- HTTP --------------------------------------------------------------------------------------------


def _headers(action: Mapping[str, Any], user_agent: str) -> list[tuple[str, str]]:
    headers = [(str(h.get("name", "")), str(h.get("value", ""))) for h in action.get("httpHeaders") or ()]
    names = {name.lower() for name, _ in headers}
    if "user-agent" not in names:
        headers.append(("User-Agent", user_agent))
    if "accept" not in names:
        headers.append(("Accept", "*/*"))
    return headers


def _go_error(url: str, exc: Exception) -> str:
    """How Go's http client words a request that got no response."""
    if isinstance(exc, httpx.TimeoutException):
        return f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    cause: BaseException | None = exc
    for _ in range(10):  # the chain is short; bounded all the same
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            host = urllib.parse.urlsplit(url).netloc
            return f'Get "{url}": dial tcp {host}: connect: connection refused'
        cause = cause.__cause__ or cause.__context__
    return f'Get "{url}": {exc or type(exc).__name__}'


async def _http_get(target: Target, action: Mapping[str, Any], *, timeout: float | None,
                    user_agent: str) -> tuple[httpx.Response, str, bytes]:
    """GET the action's URL, following same-host redirects; (last response, its URL, body prefix)."""
    port = extract_port(action.get("port"), target.container)
    url = probe_url(action.get("scheme") or "HTTP", action.get("host") or target.pod_ip, port,
                    action.get("path") or "")
    first_host = urllib.parse.urlsplit(url).hostname
    headers = _headers(action, user_agent)
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                async with target.http.stream("GET", url, headers=headers) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) >= MAX_OUTPUT:
                            break
                location = response.headers.get("location")
                if not response.is_redirect or not location:
                    return response, url, bytes(body[:MAX_OUTPUT])
                following = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(following).hostname != first_host:
                    return response, url, bytes(body[:MAX_OUTPUT])  # Go's ErrUseLastResponse
                url = following
    except TimeoutError as exc:
        raise httpx.TimeoutException("timed out") from exc
    raise httpx.TooManyRedirects(f"stopped after {MAX_REDIRECTS} redirects")


async def _http_probe(target: Target, action: Mapping[str, Any], timeout: float) -> ProbeResult:
    try:
        response, _, body = await _http_get(target, action, timeout=timeout, user_agent=PROBE_USER_AGENT)
    except (httpx.HTTPError, OSError) as exc:
        return ProbeResult(Outcome.FAILURE, _go_error(_url_of(target, action), exc))
    text = body.decode("utf-8", errors="replace")
    if 200 <= response.status_code < 400:
        if response.status_code >= 300:
            return ProbeResult(Outcome.WARNING, f"Probe terminated redirects, Response body: {text}")
        return ProbeResult(Outcome.SUCCESS, text)
    return ProbeResult(Outcome.FAILURE, f"HTTP probe failed with statuscode: {response.status_code}")


def _url_of(target: Target, action: Mapping[str, Any]) -> str:
    port = extract_port(action.get("port"), target.container)
    return probe_url(action.get("scheme") or "HTTP", action.get("host") or target.pod_ip, port,
                     action.get("path") or "")


# -- TCP ---------------------------------------------------------------------------------------------


async def _tcp_probe(target: Target, action: Mapping[str, Any], timeout: float) -> ProbeResult:
    port = extract_port(action.get("port"), target.container)
    host = action.get("host") or target.pod_ip
    address = _join_host_port(host, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return ProbeResult(Outcome.FAILURE, f"dial tcp {address}: i/o timeout")
    except ConnectionRefusedError:
        return ProbeResult(Outcome.FAILURE, f"dial tcp {address}: connect: connection refused")
    except OSError as exc:
        return ProbeResult(Outcome.FAILURE, f"dial tcp {address}: {(exc.strerror or str(exc)).lower()}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(Outcome.SUCCESS)


# -- entry points ------------------------------------------------------------------------------------


async def probe_action(probe: Mapping[str, Any], target: Target, *, timeout: float) -> ProbeResult:
    """One try of `probe` against `target`; see the module docstring."""
    if (action := probe.get("exec")) is not None:
        command = [str(a) for a in action.get("command") or ()]
        code, output = await _exec(target, command, timeout)
        if code is None:
            return ProbeResult(Outcome.FAILURE, f"command {_go_quote(' '.join(command))} timed out")
        return ProbeResult(Outcome.SUCCESS if code == 0 else Outcome.FAILURE, output)
    if (action := probe.get("httpGet")) is not None:
        return await _http_probe(target, action, timeout)
    if (action := probe.get("tcpSocket")) is not None:
        return await _tcp_probe(target, action, timeout)
    if probe.get("grpc") is not None:
        raise HandlerError("gRPC probes are not supported by this node agent")
    raise HandlerError(f"missing probe handler for {target.container.get('name', '')}")


async def hook_action(handler: Mapping[str, Any], target: Target, *, clock: Clock, pod: Mapping[str, Any]) -> None:
    """Run a lifecycle hook to its end; raises `HandlerError` with upstream's message when it fails."""
    meta = pod.get("metadata") or {}
    pod_text = "{}_{}({})".format(meta.get("name"), meta.get("namespace"), meta.get("uid"))  # format.Pod
    where = f"for Container {_go_quote(str(target.container.get('name', '')))} in Pod {_go_quote(pod_text)}"
    if (action := handler.get("exec")) is not None:
        command = [str(a) for a in action.get("command") or ()]
        try:
            code, output = await _exec(target, command, None)
        except HandlerError as exc:
            code, output, error = None, "", str(exc)
        else:
            error = f"command '{' '.join(command)}' exited with {code}: {output}"
        if code != 0:
            raise HandlerError(f"Exec lifecycle hook ([{' '.join(command)}]) {where} failed - error: {error}, "
                               f"message: {_go_quote(output)}")
        return
    if (action := handler.get("httpGet")) is not None:
        try:
            await _http_get(target, action, timeout=None, user_agent=HOOK_USER_AGENT)
        except (httpx.HTTPError, OSError, HandlerError) as exc:
            message = str(exc) if isinstance(exc, HandlerError) else _go_error(_url_of(target, action), exc)
            raise HandlerError(f"HTTP lifecycle hook ({action.get('path', '')}) {where} failed - error: "
                               f"{message}") from exc
        return
    if (action := handler.get("sleep")) is not None:
        await clock.sleep(float(action.get("seconds") or 0))
        return
    raise HandlerError(f"Cannot run handler: unknown handler type {where}")
