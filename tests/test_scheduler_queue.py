"""What `--queue-size` bounds: requests that wait for a slot, not ones a free slot will take.

The scheduler's thread is not started, as on a CPU so busy that it has not yet had its
turn: submitted jobs stay in `waiting` though slots are free for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from chatd.backend import BackendOverloaded, GenerationRequest
from chatd.engine.output import plan_output
from chatd.engine.runtime import Runtime, default_model_path
from chatd.engine.scheduler import Scheduler
from chatd.engine.sequence import Job


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    yield Runtime(default_model_path(), n_ctx=512, n_seq_max=4, n_threads=1)


def job(scheduler: Scheduler, loop: asyncio.AbstractEventLoop, n: int = 1) -> Job:
    request = GenerationRequest(model="m", messages=[{"role": "user", "content": "Hi"}], n=n)
    plan = plan_output(request, scheduler.vocab)
    prompt = scheduler.vocab.tokenize("Hi", special=False)
    return Job(request, prompt, plan, loop, asyncio.Queue(), ctx_limit=scheduler.ctx_limit)


def test_free_slots_and_the_queue_both_take_requests(runtime: Runtime) -> None:
    loop = asyncio.new_event_loop()
    scheduler = Scheduler(runtime, parallel=2, queue_size=2)
    for _ in range(4):  # two for the free slots, two queued
        scheduler.submit(job(scheduler, loop))
    with pytest.raises(BackendOverloaded):
        scheduler.submit(job(scheduler, loop))
    assert len(scheduler.waiting) == 4
    loop.close()


def test_a_request_wider_than_the_free_slots_waits(runtime: Runtime) -> None:
    loop = asyncio.new_event_loop()
    scheduler = Scheduler(runtime, parallel=2, queue_size=1)
    scheduler.submit(job(scheduler, loop))  # takes one slot
    scheduler.submit(job(scheduler, loop, n=2))  # needs two: queued
    with pytest.raises(BackendOverloaded):
        scheduler.submit(job(scheduler, loop))  # behind it, FIFO: over the queue
    loop.close()


def test_cancelled_waiting_requests_free_their_place(runtime: Runtime) -> None:
    loop = asyncio.new_event_loop()
    scheduler = Scheduler(runtime, parallel=1, queue_size=1)
    scheduler.submit(job(scheduler, loop))
    queued = job(scheduler, loop)
    scheduler.submit(queued)
    scheduler.cancel(queued)
    scheduler.submit(job(scheduler, loop))
    loop.close()
