"""A request in the engine (`Job`) and each of its choices (`Choice`): per-token bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from chatd.backend import (
    Event,
    Finish,
    FinishReason,
    GenerationRequest,
    TokenLogprob,
    TopLogprob,
)
from chatd.engine.output import ChoiceOutput, OutputPlan
from chatd.engine.prediction import Draft
from chatd.engine.runtime import Vocab
from chatd.engine.sampling import LogprobInfo, Sampler
from chatd.engine.stops import Emitted, TokenText


class Choice:
    """One generated choice: its sequence id, sampler, text decoder with stops, output parser."""

    def __init__(
        self,
        index: int,
        seq: int,
        sampler: Sampler,
        output: ChoiceOutput,
        stops: list[str],
        want_logprobs: bool,
    ) -> None:
        self.index = index
        self.seq = seq
        self.sampler = sampler
        self.output = output
        self.text: TokenText[TokenLogprob] = TokenText(stops)
        self.want_logprobs = want_logprobs
        self.tokens: list[int] = []  # sampled tokens that count as completion tokens
        self.next_token = -1  # sampled, not yet decoded
        self.pos = 0  # position of next_token
        self.finished = False
        self.draft: Draft | None = None

    def take(self, data: bytes, entry: TokenLogprob | None) -> tuple[list[Event], bool]:
        """Feed one token's bytes; returns the events it releases and whether a stop was hit."""
        return self._events(self.text.push(data, entry))

    def flush(self) -> list[Event]:
        """Release what the decoder and the stop matcher still hold."""
        return self._events(self.text.finish())[0]

    def _events(self, emitted: Emitted[TokenLogprob]) -> tuple[list[Event], bool]:
        entries = emitted.items if self.want_logprobs else None
        if not emitted.text and not entries:
            return [], emitted.stopped
        return self.output.feed(emitted.text, entries), emitted.stopped


@dataclass(eq=False)
class Job:
    """A request admitted to (or waiting for) the engine."""

    request: GenerationRequest
    prompt: list[int]
    plan: OutputPlan
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[Event] | None]
    ctx_limit: int
    choices: list[Choice] = field(default_factory=list)
    cancelled: bool = False
    prefill_pos: int = 0  # next prompt token to evaluate
    cached_tokens: int = 0
    predicted: list[int] = field(default_factory=list)  # draft tokens from `prediction`
    outbox: list[Event] = field(default_factory=list)

    @property
    def prefilling(self) -> bool:
        return self.prefill_pos < len(self.prompt)

    @property
    def done(self) -> bool:
        return bool(self.choices) and all(c.finished for c in self.choices)

    def logprob_entry(self, vocab: Vocab, info: LogprobInfo) -> TokenLogprob:
        return TokenLogprob(
            token=vocab.token_text(info.token_id),
            logprob=info.logprob,
            bytes=list(vocab.token_bytes(info.token_id)),
            top_logprobs=[
                TopLogprob(vocab.token_text(t), lp, list(vocab.token_bytes(t)))
                for t, lp in info.top
            ],
        )

    def finish_choice(self, choice: Choice, reason: FinishReason) -> None:
        events = choice.flush()
        more, reason = choice.output.finish(reason)
        choice.finished = True
        self.outbox.extend(events)
        self.outbox.extend(more)
        matched = choice.text.matcher.matched if reason == "stop" else None
        self.outbox.append(Finish(choice.index, reason, matched))

    def send(self, mailbox: Mailbox, final: list[Event] | None = None) -> None:
        """Post the events of this step for the request's coroutine."""
        if final:
            self.outbox.extend(final)
        if self.outbox:
            events, self.outbox = self.outbox, []
            mailbox.post(self, events)

    def close(self, mailbox: Mailbox) -> None:
        mailbox.post(self, None)


class Mailbox:
    """Events from the engine thread to the event loops, delivered in one wake-up per step.

    Waking a loop hands it the GIL; flushing just before a decode (which releases the
    GIL) lets the loop's work overlap the kernels instead of the engine's own Python.
    """

    def __init__(self) -> None:
        self.pending: dict[asyncio.AbstractEventLoop, list[tuple[Job, list[Event] | None]]] = {}

    def post(self, job: Job, events: list[Event] | None) -> None:
        self.pending.setdefault(job.loop, []).append((job, events))

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for loop, items in pending.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[Job, list[Event] | None]]) -> None:
    for job, events in items:
        job.queue.put_nowait(events)
