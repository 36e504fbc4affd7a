"""The continuous-batching loop: one thread owns the llama.cpp context.

Each step admits waiting jobs (reusing cached prompt prefixes), builds one batch of
prompt chunks plus one token per running choice, decodes it, and samples every
choice that produced logits. Finished sequences stay in the prefix cache.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque

import numpy as np

from chatd.backend import BackendOverloaded, Usage
from chatd.engine.prediction import Draft
from chatd.engine.runtime import Batch, Runtime
from chatd.engine.sampling import LogprobInfo, Sampler, derive_seed, sample_greedy_batch
from chatd.engine.sequence import Choice, Job, Mailbox

log = logging.getLogger("chatd.engine")

LONG_PREFILL = 512  # prompt tokens to evaluate that make idle cached prefixes worth evicting


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


class PrefixCache:
    """KV of finished sequences, by sequence id, least recently used first.

    An entry remembers the `prompt_cache_key` of the request that left it; a request
    with a key looks among the entries of its key first, then among all of them.
    """

    def __init__(self) -> None:
        self.entries: OrderedDict[int, np.ndarray] = OrderedDict()
        self.keys: dict[int, str | None] = {}

    def best(self, prompt: np.ndarray, key: str | None = None) -> tuple[int | None, int]:
        best_seq, best_len = None, 0
        groups = [[s for s in self.entries if self.keys.get(s) == key]] if key else []
        for group in [*groups, list(self.entries)]:
            for seq in group:
                n = common_prefix(self.entries[seq], prompt)
                if n > best_len:
                    best_seq, best_len = seq, n
            if best_seq is not None:
                break
        if best_seq is not None:
            self.entries.move_to_end(best_seq)
        return best_seq, best_len

    def add(self, seq: int, tokens: np.ndarray, key: str | None) -> None:
        self.entries[seq] = tokens
        self.keys[seq] = key

    def pop(self, seq: int | None = None) -> int:
        """Remove `seq`, or the least recently used entry; returns its sequence id."""
        if seq is None:
            seq, _ = self.entries.popitem(last=False)
        else:
            del self.entries[seq]
        self.keys.pop(seq, None)
        return seq

    def size(self) -> int:
        """Tokens held, counting shared prefixes once per entry (an upper bound)."""
        return sum(len(tokens) for tokens in self.entries.values())

    def covered(self, tokens: np.ndarray) -> list[int]:
        """Entries whose tokens are a prefix of `tokens` (made redundant by it)."""
        return [
            seq
            for seq, cached in self.entries.items()
            if len(cached) <= len(tokens) and common_prefix(cached, tokens) == len(cached)
        ]


class Scheduler:
    """Runs jobs on a Runtime in a background thread."""

    def __init__(
        self, runtime: Runtime, *, parallel: int, queue_size: int, prefix_cache: bool = True
    ) -> None:
        self.runtime = runtime
        self.vocab = runtime.vocab
        self.parallel = parallel
        self.queue_size = queue_size
        self.ctx_limit = min(runtime.n_ctx, runtime.n_ctx_train or runtime.n_ctx)
        self.batch = Batch(runtime.n_batch)
        self.free_seqs: deque[int] = deque(range(runtime.n_seq_max))
        self.cache = PrefixCache()
        self.waiting: deque[Job] = deque()
        self.mailbox = Mailbox()
        self.running: list[Job] = []
        self.lock = threading.Condition()
        self.stopping = False
        self.prefix_cache = prefix_cache
        self.prefill_chunk = 256  # prompt tokens per step while other sequences decode
        self.totals: dict[str, float] = dict.fromkeys(
            (
                "requests_total",
                "cancelled_requests_total",
                "prompt_tokens_total",
                "cached_prompt_tokens_total",
                "completion_tokens_total",
                "accepted_prediction_tokens_total",
                "rejected_prediction_tokens_total",
            ),
            0,
        )
        self.thread = threading.Thread(target=self._run, name="chatd-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify()
        self.thread.join(timeout=10)

    def submit(self, job: Job) -> None:
        with self.lock:
            self.waiting.append(job)
            if self._queued() > self.queue_size:
                self.waiting.pop()
                raise BackendOverloaded("The server is busy; too many requests are queued.")
            self.lock.notify()

    def _queued(self) -> int:
        """Waiting jobs that the free slots would not admit at once: what --queue-size bounds.

        Jobs still sit in `waiting` until the engine thread's next turn, which a busy CPU can
        delay; counting them all would refuse requests that free slots are there to take.
        """
        free = self.parallel - self.active_sequences
        queued = 0
        for job in self.waiting:
            if job.cancelled:
                continue  # leaves at the engine thread's next turn
            n = job.request.n
            if not queued and (n <= free or free == self.parallel):
                free -= n
            else:
                queued += 1
        return queued

    def cancel(self, job: Job) -> None:
        with self.lock:
            job.cancelled = True
            self.lock.notify()

    @property
    def active_sequences(self) -> int:
        return sum(len(job.choices) for job in self.running)

    def stats(self) -> dict[str, float]:
        """Gauges and counters for /metrics (read without the lock: approximate)."""
        return {
            **self.totals,
            "running_requests": len(self.running),
            "running_sequences": self.active_sequences,
            "waiting_requests": len(self.waiting),
            "cached_prefixes": len(self.cache.entries),
        }

    # -- the loop -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.stopping and not self.waiting and not self.running:
                    self.mailbox.flush()
                    self.lock.wait()
                if self.stopping:
                    break
                self._drop_cancelled()
                self._admit()
            if self.running:
                try:
                    self._step()
                except Exception:
                    log.exception("engine step failed; ending the running requests")
                    for job in self.running:
                        self._end_job(job, error=True)
                    self.running.clear()
        for job in [*self.running, *self.waiting]:
            job.close(self.mailbox)
        self.mailbox.flush()

    def _drop_cancelled(self) -> None:
        for job in [j for j in self.waiting if j.cancelled]:
            self.waiting.remove(job)
            job.close(self.mailbox)
        for job in [j for j in self.running if j.cancelled]:
            self.totals["cancelled_requests_total"] += 1
            self.running.remove(job)
            self._release(job)
            job.close(self.mailbox)

    def _admit(self) -> None:
        while self.waiting:
            job = self.waiting[0]
            n = job.request.n
            active = self.active_sequences
            if active and active + n > self.parallel:
                return
            if not self._reserve(n):
                return
            self.waiting.popleft()
            self._start(job)
            self.running.append(job)

    def _reserve(self, n: int) -> bool:
        """Make n sequence ids free, evicting cached prefixes if needed."""
        while len(self.free_seqs) < n and self.cache.entries:
            self._evict()
        return len(self.free_seqs) >= n

    def _evict(self, seq: int | None = None) -> None:
        """Drop cached prefix `seq` (default: the least recently used) and free its id."""
        seq = self.cache.pop(seq)
        self.runtime.seq_rm(seq)
        self.free_seqs.append(seq)

    def _start(self, job: Job) -> None:
        request = job.request
        plan = job.plan
        top = request.top_logprobs if request.logprobs else None
        for index in range(request.n):
            seq = self.free_seqs.popleft()
            self.runtime.seq_rm(seq)
            sampler = Sampler(
                request.sampling,
                self.vocab.n_vocab,
                top_logprobs=top,
                seed=derive_seed(request.sampling.seed, index),
                banned=self.vocab.eog_ids if request.ignore_eos else None,
            )
            choice = Choice(
                index, seq, sampler, plan.new_choice(index), request.stop, request.logprobs
            )
            if job.predicted:
                choice.draft = Draft(job.predicted)
            job.choices.append(choice)
        prompt = np.asarray(job.prompt, dtype=np.int32)
        source, shared = self.cache.best(prompt, request.prompt_cache_key)
        shared = min(shared, len(job.prompt) - 1)
        if source is not None and shared > 0:
            self.runtime.seq_cp(source, job.choices[0].seq, 0, shared)
            job.prefill_pos = job.cached_tokens = shared
        if len(job.prompt) - shared >= LONG_PREFILL:
            self._shrink_cache(keep=source)

    def _shrink_cache(self, keep: int | None) -> None:
        """Evict idle prefixes down to a sixteenth of the context before a long prefill.

        Flash attention scans the mask of every used cell for every prompt token, so
        idle cells slow a long prompt (1,800 tokens: 8.0-9.1 s beside 2,800 cached cells,
        7.1-7.5 s after this); `keep` (the prefix the prompt reuses) stays.
        """
        budget = self.runtime.n_ctx // 16
        for seq in list(self.cache.entries):
            if self.cache.size() <= budget:
                return
            if seq != keep:
                self._evict(seq)

    # -- one step -----------------------------------------------------------------

    def _step(self) -> None:
        batch = self.batch
        batch.clear()
        outputs: list[tuple[Job, Choice, int, list[int]]] = []
        prompts_done: list[tuple[Job, int]] = []
        for job in self.running:
            if job.prefilling:
                continue
            for choice in job.choices:
                if not choice.finished:
                    i = batch.add(choice.next_token, choice.pos, choice.seq, True)
                    drafted = self._draft(job, choice)
                    for k, token in enumerate(drafted, start=1):
                        batch.add(token, choice.pos + k, choice.seq, True)
                    outputs.append((job, choice, i, drafted))
        budget = batch.capacity - batch.n
        if batch.n:
            budget = min(budget, self.prefill_chunk)
        chunks: list[tuple[Job, int]] = []
        for job in self.running:
            if not job.prefilling or budget <= 0:
                continue
            end = min(len(job.prompt), job.prefill_pos + budget)
            seq = job.choices[0].seq
            for pos in range(job.prefill_pos, end):
                batch.add(job.prompt[pos], pos, seq, pos == len(job.prompt) - 1)
            if end == len(job.prompt):
                prompts_done.append((job, batch.n - 1))
            chunks.append((job, end))
            budget -= end - job.prefill_pos
        if batch.n == 0:
            return
        self.mailbox.flush()
        status = self.runtime.decode(batch)
        if status != 0:
            self._make_room(status)
            return
        for job, end in chunks:
            job.prefill_pos = end
            if end == len(job.prompt):
                self._fork_prompt(job)
        for job, i in prompts_done:
            logits = self.runtime.logits(i)
            for choice in job.choices:
                self._sample(job, choice, logits)
        greedy = self._greedy_tokens(outputs)
        for job, choice, i, drafted in outputs:
            choice.pos += 1
            picked = greedy.get(choice.seq)
            if picked is not None:
                choice.sampler.accept(picked)
                self._take(job, choice, picked, None)
            else:
                self._sample(job, choice, self.runtime.logits(i))
            if drafted:
                self._verify(job, choice, i, drafted)
        finished = []
        for job in self.running:
            if job.done:
                finished.append(job)
            else:
                job.send(self.mailbox)
        for job in finished:
            self.running.remove(job)
            self._end_job(job)

    def _draft(self, job: Job, choice: Choice) -> list[int]:
        """Predicted tokens to verify after `next_token`, within the length limits."""
        if choice.draft is None:
            return []
        room = min(
            self.batch.capacity - self.batch.n,
            job.ctx_limit - choice.pos - 1,
            (job.request.max_tokens or job.ctx_limit) - len(choice.tokens) - 1,
        )
        return choice.draft.propose(room)

    def _verify(self, job: Job, choice: Choice, first: int, drafted: list[int]) -> None:
        """Keep drafted tokens while the sampler agrees; drop the KV of the rest."""
        accepted = 0
        for k, token in enumerate(drafted, start=1):
            if choice.finished or choice.next_token != token:
                break
            accepted += 1
            choice.pos += 1
            self._sample(job, choice, self.runtime.logits(first + k))
        if choice.draft is not None:
            choice.draft.verified(len(drafted), accepted)
        if accepted < len(drafted):
            self.runtime.seq_rm(choice.seq, choice.pos, -1)

    def _fork_prompt(self, job: Job) -> None:
        """Give every choice the prompt's KV (metadata-only copies in a unified cache)."""
        first = job.choices[0]
        for choice in job.choices:
            if choice is not first:
                self.runtime.seq_cp(first.seq, choice.seq)
            choice.pos = len(job.prompt)

    def _make_room(self, status: int) -> None:
        if status < 0:
            raise RuntimeError(f"llama_decode failed with {status}")
        if self.cache.entries:
            self._evict()
            return
        victim = max(self.running, key=lambda j: max((c.pos for c in j.choices), default=0))
        log.warning("KV cache full: ending the longest request with finish_reason length")
        for choice in victim.choices:
            if not choice.finished:
                victim.finish_choice(choice, "length")
        self.running.remove(victim)
        self._end_job(victim)

    def _greedy_tokens(self, outputs: list[tuple[Job, Choice, int, list[int]]]) -> dict[int, int]:
        """One argmax over the rows of every plain greedy choice: {sequence id: token}.

        Rows whose argmax is banned (ignore_eos), and choices with a grammar mask or
        drafts, go through their own sampler instead.
        """
        picked = [
            (choice, i)
            for _, choice, i, drafted in outputs
            if not drafted and choice.sampler.plain_greedy and choice.output.unconstrained
        ]
        if len(picked) < 2:
            return {}
        tokens = sample_greedy_batch(self.runtime.logits_rows([i for _, i in picked])).tolist()
        return {
            choice.seq: token
            for (choice, _), token in zip(picked, tokens, strict=True)
            if not choice.sampler.is_banned(token)
        }

    def _sample(self, job: Job, choice: Choice, logits: np.ndarray) -> None:
        token, info = choice.sampler.sample(logits, choice.output.mask())
        self._take(job, choice, token, info)

    def _take(self, job: Job, choice: Choice, token: int, info: LogprobInfo | None) -> None:
        """Record a sampled token: grammar, end of generation, text and stops, limits."""
        request = job.request
        choice.output.advance(token)
        if self.vocab.eog_mask[token]:
            job.finish_choice(choice, "stop")
            return
        choice.tokens.append(token)
        if choice.draft is not None:
            choice.draft.observe(choice.tokens)
        entry = job.logprob_entry(self.vocab, info) if info is not None else None
        events, hit = choice.take(self.vocab.token_bytes(token), entry)
        job.outbox.extend(events)
        if hit or choice.output.must_stop():
            job.finish_choice(choice, "stop")
        elif len(choice.tokens) == request.max_tokens or choice.pos >= job.ctx_limit:
            job.finish_choice(choice, "length")
        else:
            choice.next_token = token

    # -- ending -------------------------------------------------------------------

    def _end_job(self, job: Job, error: bool = False) -> None:
        drafts = [c.draft for c in job.choices if c.draft is not None]
        usage = Usage(
            prompt_tokens=len(job.prompt),
            completion_tokens=sum(len(c.tokens) for c in job.choices),
            cached_tokens=job.cached_tokens,
            accepted_prediction_tokens=sum(d.accepted for d in drafts),
            rejected_prediction_tokens=sum(d.rejected for d in drafts),
        )
        totals = self.totals
        totals["requests_total"] += 1
        totals["prompt_tokens_total"] += usage.prompt_tokens
        totals["cached_prompt_tokens_total"] += usage.cached_tokens
        totals["completion_tokens_total"] += usage.completion_tokens
        totals["accepted_prediction_tokens_total"] += usage.accepted_prediction_tokens
        totals["rejected_prediction_tokens_total"] += usage.rejected_prediction_tokens
        if not error:
            job.send(self.mailbox, [usage])
        self._release(job)
        job.close(self.mailbox)

    def _release(self, job: Job) -> None:
        """Free the job's sequences; the first one's KV stays cached for prefix reuse."""
        for k, choice in enumerate(job.choices):
            if k == 0 and self.prefix_cache and not job.prefilling:
                self._keep(choice, job.prompt, job.request.prompt_cache_key)
            else:
                self.runtime.seq_rm(choice.seq)
                self.free_seqs.append(choice.seq)
        job.choices = []
        if not self.running and not self.cache.entries:
            self.runtime.clear()  # an empty cache restarts at cell 0: same layout, same floats

    def _keep(self, choice: Choice, prompt: list[int], key: str | None) -> None:
        decoded = choice.tokens[:-1] if choice.tokens else []
        tokens = np.asarray(prompt + decoded, dtype=np.int32)
        n_kv = self.runtime.seq_pos_max(choice.seq) + 1
        tokens = tokens[:n_kv]
        for seq in self.cache.covered(tokens):
            self._evict(seq)
        self.cache.add(choice.seq, tokens, key)
        # llama.cpp attends over the whole used range of cells: idle prefixes slow every
        # step, so the cache keeps at most a quarter of the context.
        while len(self.cache.entries) > 1 and self.cache.size() > self.runtime.n_ctx // 4:
            self._evict()
