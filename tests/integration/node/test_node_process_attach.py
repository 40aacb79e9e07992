"""Attach and port-forward on the process runtime, against real processes and their shims.

Each test runs with namespaces (this machine runs the tests as root) and
without; the `runtime` fixture checks that no process outlives the test.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from node_helpers import bounded, processes_under

from timoner.node.runtime import AttachRuntime, AttachSession, ContainerSpec, PortForwardRuntime
from timoner.node.runtimes.process import ProcessRuntime


def spec(*command: str, **fields) -> ContainerSpec:
    return ContainerSpec(pod_uid="uid-1", pod_namespace="ns", pod_name="att", name="c", image="busybox",
                         command=command, **fields)


@pytest.fixture(params=[True, False], ids=["namespaces", "plain"])
async def runtime(request, tmp_path, eventually):
    if request.param:
        assert os.geteuid() == 0, "the namespace cases need root, which this machine's test runs have"
    made: list[ProcessRuntime] = []

    def make() -> ProcessRuntime:
        made.append(ProcessRuntime(tmp_path / "root", use_namespaces=request.param))
        return made[-1]

    first = make()
    first.another = make  # an "agent restart": a new runtime on the same root directory
    yield first
    for rt in made:
        for state in await rt.recover():
            await bounded(rt.stop(state.id, timeout=0))
        await rt.close()
    await eventually(lambda: not processes_under(tmp_path), what="every process of the test to be gone")


class Collector:
    """Reads an attach session's output in the background."""

    def __init__(self, session: AttachSession) -> None:
        self.chunks: list[tuple[int, bytes]] = []
        self.task = asyncio.create_task(self._run(session))

    async def _run(self, session: AttachSession) -> None:
        async for item in session.output():
            self.chunks.append(item)

    def stream(self, number: int) -> bytes:
        return b"".join(data for stream, data in self.chunks if stream == number)


def test_process_runtime_attaches_and_forwards_ports(tmp_path):
    rt = ProcessRuntime(tmp_path)
    assert isinstance(rt, AttachRuntime) and isinstance(rt, PortForwardRuntime)


async def test_stdin_once_closes_the_containers_stdin_when_the_attach_ends_it(runtime, eventually):
    script = "echo ready; while read l; do echo out:$l; echo err:$l >&2; done; echo bye; exit 4"
    started = await runtime.start(spec("sh", "-c", script, stdin=True, stdin_once=True))
    log = Path(runtime.log_path(started.spec))
    await eventually(lambda: log.exists() and b"ready" in log.read_bytes(), what="the container to start")
    session = await runtime.attach(started.id, stdin=True)
    output = Collector(session)
    await session.write_stdin(b"one\ntwo\n")
    await eventually(lambda: output.stream(1) == b"out:one\nout:two\n", what="the echoed lines")
    await session.close_stdin()
    # The container reads end of file, says bye and exits; the attach lasts until then and sees it all.
    done = await bounded(runtime.wait(started.id))
    await bounded(output.task)
    assert done.exit_code == 4
    assert output.stream(1) == b"out:one\nout:two\nbye\n"  # "ready" came before the attach: not relayed
    assert output.stream(2) == b"err:one\nerr:two\n"


async def test_without_stdin_once_the_end_of_stdin_detaches_and_stdin_stays_open(runtime, eventually):
    started = await runtime.start(spec("sh", "-c", "while read l; do echo got:$l; done; echo eof", stdin=True))
    first = await runtime.attach(started.id, stdin=True)
    output = Collector(first)
    await first.write_stdin(b"a\n")
    await eventually(lambda: output.stream(1) == b"got:a\n", what="the first line")
    await first.close_stdin()
    await bounded(output.task)  # detached: the output ends, the container goes on
    assert (await runtime.inspect(started.id)).state.value == "running"
    second = await runtime.attach(started.id, stdin=True)
    again = Collector(second)
    await second.write_stdin(b"b\n")
    await eventually(lambda: again.stream(1) == b"got:b\n", what="a line through a second attach")
    await second.close()


async def test_stdin_once_container_gets_end_of_file_when_its_attach_goes_away(runtime):
    started = await runtime.start(spec("sh", "-c", "cat; echo done", stdin=True, stdin_once=True))
    session = await runtime.attach(started.id, stdin=True)
    await session.write_stdin(b"x")
    await session.close()  # no CLOSE_STDIN: the connection just ends, as when an agent dies
    done = await bounded(runtime.wait(started.id))
    assert done.exit_code == 0


async def test_attach_after_an_agent_restart_sees_live_output(runtime, eventually):
    started = await runtime.start(spec("sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done"))
    await runtime.close()
    restarted = runtime.another()
    await restarted.recover()
    session = await restarted.attach(started.id)
    output = Collector(session)
    await eventually(lambda: output.stream(1).count(b"tick") >= 3, what="ticks through the new agent")
    await session.close()
    await bounded(output.task)


async def test_tty_container_output_is_one_stream_and_attach_resizes_it(runtime, eventually):
    started = await runtime.start(spec("sh", "-c", "read go; stty size; echo err >&2; read x", stdin=True, tty=True))
    session = await runtime.attach(started.id, stdin=True)
    output = Collector(session)
    await session.resize(132, 43)
    await session.write_stdin(b"go\r")
    await eventually(lambda: b"43 132" in output.stream(1) and b"err" in output.stream(1),
                     what="the terminal's size and stderr on the one stream")
    assert output.stream(2) == b""
    await session.write_stdin(b"bye\r")
    await bounded(runtime.wait(started.id))
    await bounded(output.task)


async def test_attach_to_an_exited_container_fails(runtime):
    started = await runtime.start(spec("true"))
    await bounded(runtime.wait(started.id))
    with pytest.raises(RuntimeError, match="not running"):
        await runtime.attach(started.id)


async def test_connect_reaches_a_port_on_the_hosts_loopback(runtime, unused_tcp_port):
    async def echo(reader, writer):
        writer.write(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        reader, writer = await runtime.connect("uid-1", server.sockets[0].getsockname()[1])
        writer.write(b"ping")
        assert await bounded(reader.read(100)) == b"ping"
        writer.close()
    finally:
        server.close()
    with pytest.raises(OSError):
        await runtime.connect("uid-1", unused_tcp_port)
