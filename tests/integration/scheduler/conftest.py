"""Fixtures for scheduler integration tests: a fresh API server per test, a client, a running scheduler.

Nodes are cluster-scoped and the scheduler considers every node, so each
test gets its own server (they start in milliseconds on the memory
backend) rather than sharing one and seeing other tests' nodes.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from timoner.scheduler import Scheduler


@pytest.fixture
async def start_scheduler(client):
    """Start a `Scheduler` (short backoffs so retries after a cluster change are quick); stopped at teardown."""
    tasks: list[asyncio.Task] = []

    async def start(**options) -> Scheduler:
        options = {"initial_backoff": 0.05, "max_backoff": 0.2, **options}
        scheduler = Scheduler(client, **options)
        tasks.append(asyncio.create_task(scheduler.run()))
        return scheduler

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
