"""The Controller loop without a server: how outcomes requeue, and how owned objects map to their owner."""

from __future__ import annotations

from timoner.api.errors import Conflict
from timoner.controllers import Change, Controller, Request, Result


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def now(self):
        return self.t

    async def sleep(self, seconds):
        self.t += seconds


class Scripted:
    """A reconciler that answers from a script: a Result, or an exception to raise."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.seen: list[Request] = []

    async def reconcile(self, request):
        self.seen.append(request)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


REQ = Request("ns", "web")


async def test_errors_requeue_with_growing_backoff_and_success_forgets():
    clock = FakeClock()
    reconciler = Scripted(Conflict("replicasets", "web"), RuntimeError("boom"), Result())
    controller = Controller("test", reconciler, clock=clock)
    await controller.process(REQ)
    assert controller.queue.num_requeues(REQ) == 1 and len(controller.queue) == 0  # waiting 5 ms
    clock.t += 0.005
    assert len(controller.queue) == 1
    key = await controller.queue.get()
    await controller.process(key)
    controller.queue.done(key)
    assert controller.queue.num_requeues(REQ) == 2
    clock.t += 0.009
    assert len(controller.queue) == 0  # the second backoff is 10 ms
    clock.t += 0.001
    key = await controller.queue.get()
    await controller.process(key)
    controller.queue.done(key)
    assert controller.queue.num_requeues(REQ) == 0 and len(controller.queue) == 0
    assert controller.reconciles == 3


async def test_requeue_after_waits_and_requeue_backs_off():
    clock = FakeClock()
    controller = Controller("test", Scripted(Result(requeue_after=30), Result(requeue=True)), clock=clock)
    await controller.process(REQ)
    clock.t += 29.9
    assert len(controller.queue) == 0
    clock.t += 0.2
    assert len(controller.queue) == 1
    key = await controller.queue.get()
    await controller.process(key)
    controller.queue.done(key)
    assert controller.queue.num_requeues(REQ) == 1


class FakeInformer:
    def __init__(self):
        self.handlers = []

    def add_handler(self, on_add=None, on_update=None, on_delete=None):
        self.handlers.append((on_add, on_update, on_delete))


def owned(name, owner=None, kind="ReplicaSet", api_version="apps/v1", controller=True):
    refs = [{"apiVersion": api_version, "kind": kind, "name": owner, "uid": "u", "controller": controller}] if owner else []
    return {"metadata": {"namespace": "ns", "name": name, "ownerReferences": refs}}


def test_owns_maps_to_the_controller_owner_of_the_right_kind():
    controller = Controller("test", Scripted())
    informer = FakeInformer()
    controller.owns(informer, "ReplicaSet", "apps")
    on_add, on_update, on_delete = informer.handlers[0]
    on_add(owned("p1", "web-1"))
    on_add(owned("p2", "web-1"))  # deduplicated by the queue
    on_add(owned("p3", "job", kind="Job", api_version="batch/v1"))
    on_add(owned("p4", "rs", controller=False))
    on_add(owned("p5"))
    assert len(controller.queue) == 1
    on_update(owned("p1", "web-1"), owned("p1", "web-2"))  # both the old and the new owner
    on_delete(owned("p6", "web-3"))
    queued = set()
    while len(controller.queue):
        queued.add(controller.queue._queue.popleft())
    assert queued == {Request("ns", "web-1"), Request("ns", "web-2"), Request("ns", "web-3")}


def test_watches_takes_any_mapping():
    controller = Controller("test", Scripted())
    informer = FakeInformer()
    seen = []

    def mapper(change: Change):
        seen.append(change.type)
        return [Request("ns", "all")] if change.type == "delete" else []

    controller.watches(informer, mapper)
    on_add, on_update, on_delete = informer.handlers[0]
    on_add(owned("a"))
    on_update(owned("a"), owned("a"))
    on_delete(owned("a"))
    assert seen == ["add", "update", "delete"] and len(controller.queue) == 1
