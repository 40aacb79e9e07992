"""The process runtime against real processes: exit codes, logs, stop, namespaces, exec, re-adoption.

Most tests run twice: with namespaces (this machine runs the tests as root,
which those cases assert rather than skip on) and without. Every test's
processes live under its own tmp_path (their working directory, or the
shim's command line), and the `runtime` fixture checks that none is left
when the test ends.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from dataclasses import replace

import pytest
from node_helpers import bounded, processes_under

from timoner.node.runtime import ContainerSpec, ExecRuntime, ExecSession, LogsRuntime, Runtime, State
from timoner.node.runtimes.process import ContainerConfigError, ContainerStartError, ProcessRuntime


def spec(*command: str, name: str = "c", pod: str = "web-0", **fields) -> ContainerSpec:
    return ContainerSpec(pod_uid="uid-1", pod_namespace="ns", pod_name=pod, name=name, image="busybox",
                         command=command, **fields)


@pytest.fixture(params=[True, False], ids=["namespaces", "plain"])
def namespaces(request) -> bool:
    if request.param:
        assert os.geteuid() == 0, "the namespace cases need root, which this machine's test runs have"
    return request.param


@pytest.fixture
async def runtime(tmp_path, namespaces, eventually):
    """A runtime on tmp_path/root; afterwards every container it knows is killed and no process remains."""
    made: list[ProcessRuntime] = []

    def make() -> ProcessRuntime:
        made.append(ProcessRuntime(tmp_path / "root", use_namespaces=namespaces))
        return made[-1]

    first = make()
    first.another = make  # an "agent restart": a new runtime on the same root directory
    yield first
    for rt in made:
        for state in await rt.recover():
            await bounded(rt.stop(state.id, timeout=0))
        await rt.close()
    await eventually(lambda: not processes_under(tmp_path), what="every process of the test to be gone")


def test_process_runtime_implements_the_protocols(tmp_path):
    rt = ProcessRuntime(tmp_path)
    assert isinstance(rt, Runtime) and isinstance(rt, LogsRuntime) and isinstance(rt, ExecRuntime)
    assert rt.name == "process"
    assert rt.use_namespaces == (os.geteuid() == 0)


async def test_exit_code_and_cri_log(runtime):
    started = await runtime.start(spec("sh", "-c", "echo hello; echo oops >&2; exit 3"))
    assert started.state is State.RUNNING and str(started.id).startswith("process://") and started.pid
    done = await bounded(runtime.wait(started.id))
    assert (done.state, done.exit_code, done.reason) == (State.TERMINATED, 3, "Error")
    assert done.finished_at >= done.started_at

    lines = runtime.log_path(started.spec).read_text().splitlines()
    assert sorted(re.sub(r"^\S+ ", "", line) for line in lines) == ["stderr F oops", "stdout F hello"]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", line) for line in lines)
    assert sorted(b"".join([c async for c in runtime.logs(started.id)]).splitlines()) == [b"hello", b"oops"]
    assert await runtime.inspect(started.id) == done


async def test_success_is_completed_and_last_line_without_newline_is_kept(runtime):
    started = await runtime.start(spec("printf", "a\\nb"))
    done = await bounded(runtime.wait(started.id))
    assert (done.exit_code, done.reason) == (0, "Completed")
    assert b"".join([c async for c in runtime.logs(started.id)]) == b"a\nb\n"


async def test_env_and_working_dir_are_applied(runtime, tmp_path):
    workdir = tmp_path / "not" / "yet"
    started = await runtime.start(spec("sh", "-c", "pwd; env", env={"GREETING": "hi there"},
                                       working_dir=str(workdir)))
    await bounded(runtime.wait(started.id))
    out = b"".join([c async for c in runtime.logs(started.id)]).decode().splitlines()
    assert out[0] == str(workdir)
    assert "GREETING=hi there" in out
    assert any(line.startswith("PATH=/usr/local/sbin:") for line in out)  # added because the spec had none
    # Nothing of the agent's own environment leaks in (the shell adds only PWD and the like).
    assert not any(line.startswith(name + "=") for line in out for name in ("HOME", "PYTHONPATH", "VIRTUAL_ENV"))


@pytest.mark.parametrize(("pod", "hostname"), [("web-7", "web-7"), ("a" * 62 + "-" + "b" * 9, "a" * 62)])
async def test_namespaces_give_the_pod_name_as_hostname_and_pid_1(runtime, pod, hostname):
    started = await runtime.start(spec("sh", "-c", "hostname; echo $$; ls /proc | grep -c '^[0-9]'", pod=pod))
    await bounded(runtime.wait(started.id))
    out = b"".join([c async for c in runtime.logs(started.id)]).decode().split()
    if runtime.use_namespaces:
        # Own /proc too: only the shell and the two commands of the pipeline are in the namespace.
        assert out[0] == hostname and out[1] == "1" and int(out[2]) <= 3
    else:
        assert out[0] == os.uname().nodename and out[1] == str(started.pid)


async def test_stop_with_a_handled_sigterm_ends_within_the_grace_period(runtime):
    started = await runtime.start(spec("sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"))
    await wait_for_log(runtime, started, b"ready")
    begun = time.monotonic()
    stopped = await bounded(runtime.stop(started.id, timeout=60))
    assert (stopped.state, stopped.exit_code, stopped.reason) == (State.TERMINATED, 7, "Error")
    assert time.monotonic() - begun < 30
    assert await runtime.stop(started.id, timeout=60) == stopped  # stopping again: the same final state


async def test_sleep_gets_sigterm_without_namespaces_and_ignores_it_as_pid_1(runtime):
    started = await runtime.start(spec("sleep", "1000"))
    stopped = await bounded(runtime.stop(started.id, timeout=0.5))
    # A PID 1 that installs no handler ignores SIGTERM, as in any container: the grace period ends it.
    expected = 128 + (signal.SIGKILL if runtime.use_namespaces else signal.SIGTERM)
    assert (stopped.exit_code, stopped.reason) == (expected, "Error")


async def test_a_container_ignoring_sigterm_is_killed_when_the_timeout_ends(runtime):
    started = await runtime.start(spec("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"))
    await wait_for_log(runtime, started, b"ready")
    begun = time.monotonic()
    stopped = await bounded(runtime.stop(started.id, timeout=0.3))
    assert time.monotonic() - begun >= 0.3
    assert (stopped.exit_code, stopped.reason) == (137, "Error")


async def test_no_descendant_outlives_stop(runtime, tmp_path, eventually):
    # A child that ignores SIGTERM, and one that leaves the process group with setsid.
    workdir = tmp_path / "work"
    script = ("(trap '' TERM; exec sleep 1000) & setsid sh -c 'trap \"\" TERM; exec sleep 1001' & "
              "echo ready; wait")
    started = await runtime.start(spec("sh", "-c", script, working_dir=str(workdir)))
    await eventually(lambda: len(processes_under(workdir)) >= 3, what="the container and its two children")
    await bounded(runtime.stop(started.id, timeout=0.3))
    assert processes_under(workdir) == []


async def test_main_process_exit_ends_the_container_and_its_children(runtime, tmp_path, eventually):
    workdir = tmp_path / "work"
    started = await runtime.start(spec("sh", "-c", "sleep 1000 & setsid sleep 1001 & exec sleep 1002",
                                       working_dir=str(workdir)))
    await eventually(lambda: len(processes_under(workdir)) >= 3, what="the container and its two children")
    os.kill(started.pid, signal.SIGKILL)
    done = await bounded(runtime.wait(started.id))
    assert done.exit_code == 137
    assert processes_under(workdir) == []


async def test_no_command_and_unknown_image_is_a_config_error(runtime, tmp_path):
    with pytest.raises(ContainerConfigError) as error:
        await runtime.start(ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c",
                                          image="nginx:1.25"))
    assert str(error.value) == ('the process runtime cannot run image "nginx:1.25" without a command: it has no '
                                'known entrypoint on this host (set the container\'s command: this runtime runs host programs, not images)')
    assert not (tmp_path / "root" / "containers").exists() or not any((tmp_path / "root" / "containers").iterdir())


async def test_known_image_runs_its_entrypoint_with_args(runtime):
    started = await runtime.start(ContainerSpec(pod_uid="u", pod_namespace="ns", pod_name="p", name="c",
                                                image="docker.io/library/busybox:1.36", args=("-c", "exit 4")))
    assert (await bounded(runtime.wait(started.id))).exit_code == 4


async def test_missing_executable_or_directory_fails_start(runtime, tmp_path):
    with pytest.raises(ContainerStartError, match='exec: "no-such-program": executable file not found'):
        await runtime.start(spec("no-such-program"))
    with pytest.raises(ContainerStartError):
        await runtime.start(spec("./not-here", working_dir=str(tmp_path)))
    assert await runtime.recover() == []


async def test_restarted_agent_readopts_a_running_container(runtime, tmp_path, eventually):
    go = tmp_path / "go"
    script = f"echo before; while [ ! -e {go} ]; do sleep 0.02; done; echo after; exit 5"
    started = await runtime.start(spec("sh", "-c", script))
    await wait_for_log(runtime, started, b"before")
    await runtime.close()  # the agent goes away; the container does not

    agent = runtime.another()
    recovered = {state.id: state for state in await agent.recover()}
    assert recovered[started.id].state is State.RUNNING
    assert (recovered[started.id].pid, recovered[started.id].spec) == (started.pid, started.spec)
    go.touch()
    done = await bounded(agent.wait(started.id))
    assert (done.exit_code, done.reason) == (5, "Error")
    # Output written while no agent was watching reached the log all the same.
    assert b"".join([c async for c in agent.logs(started.id)]) == b"before\nafter\n"


async def test_restarted_agent_learns_exit_codes_and_stops_what_is_left(runtime, tmp_path):
    quick = await runtime.start(spec("sh", "-c", "exit 9", name="quick"))
    slow = await runtime.start(spec("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done",
                                    name="slow"))
    await wait_for_log(runtime, slow, b"ready")  # SIGTERM before the trap is set would end it
    await bounded(runtime.wait(quick.id))
    await runtime.close()

    agent = runtime.another()
    recovered = {state.id: state for state in await agent.recover()}
    assert (recovered[quick.id].state, recovered[quick.id].exit_code) == (State.TERMINATED, 9)
    assert recovered[slow.id].state is State.RUNNING
    # The pod is deleted later: the new agent's stop leaves nothing behind (the fixture checks that too).
    stopped = await bounded(agent.stop(slow.id, timeout=0.2))
    assert stopped.exit_code == 137
    assert processes_under(tmp_path / "root") == []
    await agent.remove(quick.id)
    assert quick.id not in {state.id for state in await agent.recover()}


async def test_remove_pod_takes_its_records_logs_and_directories_once_every_container_exited(runtime, tmp_path):
    root = tmp_path / "root"

    def files_of(*states) -> list[str]:
        return sorted(p.name for p in (root / "containers").iterdir() if p.name.split(".")[0] in
                      {s.id.id for s in states})

    quick = await runtime.start(spec("sh", "-c", "echo quick", name="quick"))
    slow = await runtime.start(spec("sh", "-c", "trap 'exit 0' TERM; echo slow; while :; do sleep 0.05; done",
                                    name="slow"))
    other = await runtime.start(replace(spec("sh", "-c", "echo other"), pod_uid="uid-2"))
    await bounded(runtime.wait(quick.id))
    await bounded(runtime.wait(other.id))
    await wait_for_log(runtime, slow, b"slow")
    (root / "pods" / "uid-3" / "c").mkdir(parents=True)  # what a container that never started leaves
    assert await runtime.pod_uids() == ["uid-1", "uid-2", "uid-3"]
    assert [name.split(".", 1)[1] for name in files_of(quick)] == ["exit", "json", "shim.log"]

    with pytest.raises(RuntimeError, match="still has running containers"):
        await runtime.remove_pod("uid-1")
    assert len(files_of(quick, slow)) == 6 and runtime.log_path(quick.spec).exists()  # nothing went

    await bounded(runtime.stop(slow.id, timeout=5))
    await runtime.remove_pod("uid-1")
    await runtime.remove_pod("uid-3")
    assert files_of(quick, slow) == [] and sorted(p.name for p in (root / "pods").iterdir()) == ["uid-2"]
    with pytest.raises(KeyError):
        await runtime.inspect(quick.id)
    assert await runtime.pod_uids() == ["uid-2"]
    assert [state.id for state in await runtime.another().recover()] == [other.id]  # an agent restart agrees
    assert b"".join([c async for c in runtime.logs(other.id)]) == b"other\n"


async def test_remove_pod_keeps_a_directory_with_something_mounted_below(tmp_path):
    assert os.geteuid() == 0, "mounting needs root, which this machine's test runs have"
    runtime = ProcessRuntime(tmp_path)
    mount_point = tmp_path / "pods" / "uid-1" / "c" / "work"
    mount_point.mkdir(parents=True)
    await asyncio.to_thread(subprocess.run, ["mount", "-t", "tmpfs", "tmpfs", str(mount_point)], check=True)
    try:
        (mount_point / "data").write_text("not ours to remove")
        await runtime.remove_pod("uid-1")
        assert (mount_point / "data").read_text() == "not ours to remove"
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", str(mount_point)], check=True)
    await runtime.remove_pod("uid-1")
    assert not (tmp_path / "pods" / "uid-1").exists()


async def test_exec_runs_inside_the_container_and_returns_its_exit_code(runtime, tmp_path):
    workdir = tmp_path / "w"
    started = await runtime.start(spec("sleep", "1000", pod="db-1", env={"ROLE": "primary"},
                                       working_dir=str(workdir)))
    session = await runtime.exec(started.id, ("sh", "-c", "hostname; pwd; echo $ROLE; echo err >&2; exit 3"))
    assert isinstance(session, ExecSession)
    output = [item async for item in session.output()]
    assert await bounded(session.wait()) == 3
    stdout = b"".join(data for stream, data in output if stream == 1).decode().splitlines()
    assert b"".join(data for stream, data in output if stream == 2) == b"err\n"
    hostname = "db-1" if runtime.use_namespaces else os.uname().nodename
    assert stdout == [hostname, str(workdir), "primary"]

    session = await runtime.exec(started.id, ("cat",), stdin=True)
    await session.write_stdin(b"ping\n")
    await session.close_stdin()
    assert [item async for item in session.output()] == [(1, b"ping\n")]
    assert await bounded(session.wait()) == 0

    missing = await runtime.exec(started.id, ("no-such-program",))
    assert [item async for item in missing.output()]  # says why, on stderr
    assert await bounded(missing.wait()) == 127


async def test_exec_with_a_tty(runtime):
    started = await runtime.start(spec("sleep", "1000"))
    session = await runtime.exec(started.id, ("sh", "-c", "stty size; tty; exit 2"), tty=True)
    await session.resize(100, 30)
    output = b"".join([data async for _, data in session.output()])
    assert await bounded(session.wait()) == 2
    assert b"/dev/pts/" in output


async def test_exec_ends_with_its_container(runtime, tmp_path):
    started = await runtime.start(spec("sleep", "1000", working_dir=str(tmp_path / "w")))
    session = await runtime.exec(started.id, ("sleep", "1000"))
    await bounded(runtime.stop(started.id, timeout=0))
    assert await bounded(session.wait()) != 0
    with pytest.raises(RuntimeError):
        await runtime.exec(started.id, ("true",))


async def test_logs_tail_follow_and_timestamps(runtime, tmp_path):
    go = tmp_path / "go"
    started = await runtime.start(spec("sh", "-c", f"seq 1 5; while [ ! -e {go} ]; do sleep 0.02; done; echo 6"))
    await wait_for_log(runtime, started, b"5")
    assert b"".join([c async for c in runtime.logs(started.id, tail_lines=2)]) == b"4\n5\n"
    assert [c async for c in runtime.logs(started.id, tail_lines=0)] == []
    stamped = b"".join([c async for c in runtime.logs(started.id, timestamps=True)]).splitlines()
    assert [line.split(b" ", 1)[1] for line in stamped] == [b"1", b"2", b"3", b"4", b"5"]
    assert all(re.match(rb"\d{4}-\d\d-\d\dT\S+Z$", line.split(b" ", 1)[0]) for line in stamped)

    followed: list[bytes] = []

    async def follow():
        async for chunk in runtime.logs(started.id, follow=True, tail_lines=1):
            followed.append(chunk)

    follower = asyncio.create_task(follow())
    await wait_until(lambda: b"".join(followed) == b"5\n")
    assert not follower.done()  # still following: the container runs
    go.touch()
    await bounded(follower)  # ends by itself once the container has exited
    assert b"".join(followed) == b"5\n6\n"


async def wait_for_log(runtime: ProcessRuntime, started, text: bytes, timeout: float = 10.0) -> None:
    async def has_text():
        return text in b"".join([c async for c in runtime.logs(started.id)])

    await wait_until(has_text, timeout)


async def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
