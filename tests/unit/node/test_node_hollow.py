"""The hollow runtime: simulated containers that run until stopped or until their annotations say."""

from __future__ import annotations

import asyncio
import signal

import pytest

from timoner.node.runtime import ContainerID, ContainerSpec, ExecRuntime, LogsRuntime, Runtime, State
from timoner.node.runtimes.hollow import (
    EXIT_AFTER,
    EXIT_CODE,
    IGNORE_SIGTERM,
    START_ERROR,
    HollowRuntime,
    parse_duration,
)


def spec(name="c", **annotations) -> ContainerSpec:
    return ContainerSpec(pod_uid="uid-1", pod_namespace="ns", pod_name="p", name=name, image="busybox",
                         annotations=annotations)


async def bounded(awaitable, seconds=5.0):
    async with asyncio.timeout(seconds):
        return await awaitable


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5.0), ("300ms", 0.3), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5), ("0", 0.0), ("10us", 1e-5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "-1s", "1s junk"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_hollow_is_a_runtime_without_optional_features():
    runtime = HollowRuntime()
    assert isinstance(runtime, Runtime)
    assert not isinstance(runtime, LogsRuntime)
    assert not isinstance(runtime, ExecRuntime)


def test_container_id_round_trips():
    cid = ContainerID("hollow", "abc")
    assert str(cid) == "hollow://abc"
    assert ContainerID.parse("hollow://abc") == cid
    with pytest.raises(ValueError):
        ContainerID.parse("abc")


async def test_container_runs_until_stopped():
    runtime = HollowRuntime()
    started = await runtime.start(spec())
    assert started.state is State.RUNNING and started.started_at is not None
    assert str(started.id).startswith("hollow://")
    waiter = asyncio.create_task(runtime.wait(started.id))
    await asyncio.sleep(0)  # let the waiter block: it must not finish while the container runs
    assert not waiter.done()
    assert (await runtime.inspect(started.id)).state is State.RUNNING

    stopped = await bounded(runtime.stop(started.id, timeout=30))
    assert (stopped.state, stopped.exit_code, stopped.reason) == (State.TERMINATED, 128 + signal.SIGTERM, "Error")
    assert (await bounded(waiter)) == stopped
    # Stopping again returns the same final state.
    assert await runtime.stop(started.id, timeout=30) == stopped


async def test_container_exits_on_its_own_with_the_annotated_code():
    runtime = HollowRuntime()
    failing = await runtime.start(spec("a", **{EXIT_AFTER: "10ms", EXIT_CODE: "3"}))
    succeeding = await runtime.start(spec("b", **{EXIT_AFTER: "10ms"}))
    done = await bounded(runtime.wait(failing.id))
    assert (done.state, done.exit_code, done.reason) == (State.TERMINATED, 3, "Error")
    assert done.finished_at is not None and done.finished_at >= done.started_at
    ok = await bounded(runtime.wait(succeeding.id))
    assert (ok.exit_code, ok.reason) == (0, "Completed")


async def test_sigterm_ignoring_container_is_killed_after_the_grace_period():
    runtime = HollowRuntime()
    started = await runtime.start(spec(**{IGNORE_SIGTERM: "true"}))
    stopped = await bounded(runtime.stop(started.id, timeout=0.05))
    assert (stopped.state, stopped.exit_code) == (State.TERMINATED, 128 + signal.SIGKILL)


async def test_sigterm_ignoring_container_that_exits_in_time_keeps_its_code():
    runtime = HollowRuntime()
    started = await runtime.start(spec(**{IGNORE_SIGTERM: "true", EXIT_AFTER: "10ms", EXIT_CODE: "0"}))
    stopped = await bounded(runtime.stop(started.id, timeout=30))
    assert (stopped.exit_code, stopped.reason) == (0, "Completed")


async def test_sigkill_works_even_when_sigterm_is_ignored():
    runtime = HollowRuntime()
    started = await runtime.start(spec(**{IGNORE_SIGTERM: "true"}))
    stopped = await runtime.stop(started.id, timeout=30, signal=signal.SIGKILL)
    assert stopped.exit_code == 137


async def test_start_error_and_bad_annotations_start_nothing():
    runtime = HollowRuntime()
    with pytest.raises(RuntimeError, match="pull failed"):
        await runtime.start(spec(**{START_ERROR: "pull failed"}))
    with pytest.raises(ValueError):
        await runtime.start(spec(**{EXIT_AFTER: "soon"}))
    assert await runtime.recover() == []


async def test_unknown_container_is_a_key_error():
    runtime = HollowRuntime()
    with pytest.raises(KeyError):
        await runtime.inspect(ContainerID("hollow", "nope"))


async def test_recover_lists_running_and_exited_containers():
    runtime = HollowRuntime()
    a = await runtime.start(spec("a"))
    b = await runtime.start(spec("b"))
    await runtime.stop(b.id, timeout=1)
    states = {s.spec.name: s.state for s in await runtime.recover()}
    assert states == {"a": State.RUNNING, "b": State.TERMINATED}
    assert a.id != b.id


async def test_remove_pod_forgets_its_exited_containers_and_refuses_running_ones():
    runtime = HollowRuntime()
    a = await runtime.start(spec("a"))
    await runtime.start(spec("b"))
    other = await runtime.start(ContainerSpec(pod_uid="uid-2", pod_namespace="ns", pod_name="q", name="c",
                                              image="busybox"))
    assert await runtime.pod_uids() == ["uid-1", "uid-2"]
    await runtime.stop(a.id, timeout=1)
    with pytest.raises(RuntimeError, match="still has running containers"):
        await runtime.remove_pod("uid-1")
    assert len(await runtime.recover()) == 3  # nothing was forgotten
    for state in await runtime.recover():
        await runtime.stop(state.id, timeout=1)
    await runtime.remove_pod("uid-1")
    assert [s.id for s in await runtime.recover()] == [other.id]
    assert await runtime.pod_uids() == ["uid-2"]
    with pytest.raises(KeyError):
        await runtime.inspect(a.id)
    await runtime.remove_pod("uid-1")  # again, or a pod never seen: nothing to do
