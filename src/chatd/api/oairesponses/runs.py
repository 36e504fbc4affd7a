"""Background responses in this process: their tasks, and the events streams replay.

A run keeps the events it has sent so far, so a client that streams it (at its
creation, or later with `GET /v1/responses/{id}?stream=true&starting_after=N`)
sees every event after N and then follows it live. Runs end with their task; a
finished response is replayed from the store instead (`output.replay`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Run:
    """One background response being generated."""

    id: str
    owner: str
    events: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    cancelled: bool = False  # by the client, not by a shutdown
    task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, events: list[dict[str, Any]]) -> None:
        if events:
            self.events.extend(events)
            self._wake.set()
            self._wake = asyncio.Event()

    def finish(self) -> None:
        self.done = True
        self._wake.set()

    async def follow(self, starting_after: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every event after sequence number `starting_after`, then new ones until the end."""
        index = 0 if starting_after is None else starting_after + 1
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.done:
                return
            await self._wake.wait()


class Runs:
    """The background runs of this process, by response id."""

    def __init__(self) -> None:
        self.by_id: dict[str, Run] = {}

    def add(self, run: Run) -> None:
        self.by_id[run.id] = run

    def get(self, response_id: str, owner: str) -> Run | None:
        run = self.by_id.get(response_id)
        return run if run is not None and run.owner == owner else None

    def remove(self, run: Run) -> None:
        self.by_id.pop(run.id, None)

    async def close(self) -> None:
        """Cancel every run (at shutdown); each saves itself as failed."""
        tasks = [run.task for run in self.by_id.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
