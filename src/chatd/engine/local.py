"""LocalBackend: the Backend contract served by the in-process llama.cpp engine."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from chatd.backend import (
    Capabilities,
    ContextLengthExceeded,
    Event,
    GenerationRequest,
    ModelInfo,
    Start,
)
from chatd.config import DEFAULTS
from chatd.engine.constraints import needs_grammar, warm_up
from chatd.engine.output import OutputPlan, plan_output
from chatd.engine.runtime import Runtime, compute_backends, default_model_path
from chatd.engine.scheduler import Scheduler
from chatd.engine.sequence import Job
from chatd.engine.template import ChatTemplate
from chatd.engine.tools import prepare_messages

# Requests whose messages hold more characters than this are prepared in a worker thread.
LARGE_PROMPT_CHARS = 32 * 1024


def model_id_from_path(path: Path) -> str:
    """`SmolLM2-135M-Instruct-Q4_1.gguf` -> `smollm2-135m-instruct-q4_1`."""
    return path.stem.lower().replace(".", "-")


CAPABILITIES = Capabilities(
    input_modalities=frozenset({"text"}),
    audio_output=False,
    reasoning_efforts=frozenset({"none"}),
    unsupported=frozenset({"audio", "web_search_options", "verbosity", "moderation"}),
)


class LocalBackend:
    """One GGUF model, many sequences at once."""

    owned_by = "chatd"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_names: list[str] | None = None,
        n_ctx: int = DEFAULTS.ctx,
        n_threads: int | None = DEFAULTS.threads,
        parallel: int = DEFAULTS.parallel,
        queue_size: int = DEFAULTS.queue_size,
        prefix_cache: bool = DEFAULTS.prefix_cache,
        flash_attn: bool = DEFAULTS.flash_attn,
        kv_type: str = DEFAULTS.kv_type,
        gpu_layers: int | None = DEFAULTS.gpu_layers,
    ) -> None:
        path = Path(model_path) if model_path else default_model_path()
        n_seq_max = min(256, 128 + parallel)  # n <= 128 choices; idle ids hold cached prefixes
        self.runtime = Runtime(
            path,
            n_ctx=n_ctx,
            n_seq_max=n_seq_max,
            n_threads=n_threads,
            n_batch=512,
            flash_attn=flash_attn,
            kv_type=kv_type,
            n_gpu_layers=gpu_layers,
        )
        self.n_threads = n_threads or os.cpu_count() or 1
        self.parallel = parallel
        self._model_ids = model_names or [model_id_from_path(path)]
        vocab = self.runtime.vocab
        self.template = ChatTemplate(
            self.runtime.metadata.get("tokenizer.chat_template"),
            bos_token=vocab.token_text(vocab.bos_id) if vocab.bos_id >= 0 else "",
            eos_token=vocab.token_text(vocab.eos_id) if vocab.eos_id >= 0 else "",
        )
        warm_up(vocab)  # the grammar tokenizer (~0.5 s) now, not on the first request
        self.scheduler = Scheduler(
            self.runtime, parallel=parallel, queue_size=queue_size, prefix_cache=prefix_cache
        )
        self.scheduler.start()

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(model_id, self.owned_by) for model_id in self._model_ids]

    def capabilities(self, model: str) -> Capabilities:
        return CAPABILITIES

    def describe(self) -> dict[str, str]:
        """What the start-up banner shows about this backend."""
        runtime = self.runtime
        backends = compute_backends()
        threads = f"{self.n_threads} thread" + ("" if self.n_threads == 1 else "s")
        size = runtime.path.stat().st_size / 2**20
        return {
            "model file": f"{runtime.path} ({size:,.0f} MiB)",
            "context": f"{runtime.n_ctx} tokens shared by {self.parallel} parallel sequences "
            f"(the model was trained on {runtime.n_ctx_train})",
            "compute": f"{' + '.join(backends)}, {threads}, "
            f"{runtime.gpu_layers} of {runtime.n_layer + 1} layers offloaded to a GPU",
        }

    def stats(self) -> dict[str, float]:
        return self.scheduler.stats()

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        """The prompt's tokens; ContextLengthExceeded if they cannot fit with max_tokens."""
        # tools, tool calls and tool results in the documented syntax (chatd.engine.tools)
        text = self.template.render(prepare_messages(request))
        limit = self.scheduler.ctx_limit
        completion = request.max_tokens or 1
        # a lower bound, so that a prompt far too long is never tokenized
        at_least = -(-len(text.encode("utf-8")) // self.runtime.vocab.longest_piece)
        if at_least + completion > limit:
            raise ContextLengthExceeded(limit, at_least, request.max_tokens, at_least=True)
        prompt = self.runtime.vocab.tokenize(text, special=True)
        if len(prompt) + completion > limit:
            raise ContextLengthExceeded(limit, len(prompt), request.max_tokens)
        return prompt

    async def count_tokens(self, request: GenerationRequest) -> int:
        """The prompt's tokens, tools included, whatever the context holds (SupportsTokenCount)."""
        if _chars(request) > LARGE_PROMPT_CHARS:
            return await asyncio.to_thread(self._count, request)
        return self._count(request)

    def _count(self, request: GenerationRequest) -> int:
        text = self.template.render(prepare_messages(request))
        return len(self.runtime.vocab.tokenize(text, special=True))

    def _prepare(
        self, request: GenerationRequest
    ) -> tuple[list[int], OutputPlan, list[int] | None]:
        """The prompt, the output plan and the predicted tokens of `request`."""
        plan = plan_output(request, self.runtime.vocab)
        prompt = self.prompt_tokens(request)
        predicted = None
        if request.prediction:
            predicted = self.runtime.vocab.tokenize(request.prediction, special=False)
        return prompt, plan, predicted

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if needs_grammar(request) or _chars(request) > LARGE_PROMPT_CHARS:
            # compiling a grammar or tokenizing a long prompt takes milliseconds to seconds:
            # not on the event loop
            prompt, plan, predicted = await asyncio.to_thread(self._prepare, request)
        else:
            prompt, plan, predicted = self._prepare(request)
        loop = asyncio.get_running_loop()
        job = Job(request, prompt, plan, loop, asyncio.Queue(), ctx_limit=self.scheduler.ctx_limit)
        if predicted is not None:
            job.predicted = predicted
        self.scheduler.submit(job)
        finished = False
        try:
            yield Start(request.model, self.runtime.fingerprint, prompt_tokens=len(prompt))
            while True:
                events = await job.queue.get()
                if events is None:
                    finished = True
                    return
                for event in events:
                    yield event
        finally:
            if not finished:
                self.scheduler.cancel(job)

    async def close(self) -> None:
        await asyncio.to_thread(self.scheduler.stop)
        self.runtime.close()


def _chars(request: GenerationRequest) -> int:
    """About how many characters the prompt holds: a cheap guess at the cost of preparing it."""
    total = len(request.prediction or "")
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return total
