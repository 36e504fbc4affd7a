"""LocalBackend: the Backend contract served by the in-process llama.cpp engine."""

from __future__ import annotations

import asyncio
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
from chatd.engine.constraints import needs_grammar, warm_up
from chatd.engine.output import plan_output
from chatd.engine.runtime import Runtime, default_model_path
from chatd.engine.scheduler import Scheduler
from chatd.engine.sequence import Job
from chatd.engine.template import ChatTemplate
from chatd.engine.tools import prepare_messages


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
        n_ctx: int = 8192,
        n_threads: int | None = None,
        parallel: int = 8,
        queue_size: int = 256,
        prefix_cache: bool = True,
        flash_attn: bool = True,
        kv_type: str = "f16",
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
        )
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

    def stats(self) -> dict[str, float]:
        return self.scheduler.stats()

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        # tools, tool calls and tool results in the documented syntax (chatd.engine.tools)
        text = self.template.render(prepare_messages(request))
        return self.runtime.vocab.tokenize(text, special=True)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if needs_grammar(request):
            # compiling a grammar can take tens of milliseconds: not on the event loop
            plan = await asyncio.to_thread(plan_output, request, self.runtime.vocab)
        else:
            plan = plan_output(request, self.runtime.vocab)
        prompt = self.prompt_tokens(request)
        limit = self.scheduler.ctx_limit
        if len(prompt) + (request.max_tokens or 1) > limit:
            raise ContextLengthExceeded(limit, len(prompt), request.max_tokens)
        loop = asyncio.get_running_loop()
        job = Job(request, prompt, plan, loop, asyncio.Queue(), ctx_limit=limit)
        if request.prediction:
            job.predicted = self.runtime.vocab.tokenize(request.prediction, special=False)
        self.scheduler.submit(job)
        finished = False
        try:
            yield Start(request.model, self.runtime.fingerprint)
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
