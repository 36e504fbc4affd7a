"""Start llama-cpp-python's server with weight repacking off (it has no option for it).

    LCP_PYTHON bench/lcp_norepack.py [server options]

Run with the peer's own interpreter. Its `Llama` takes `llama_model_default_params()`
as is, whose `use_extra_bufts` is on; repacking Q4_1 for AMX segfaults in llama_decode on
this CPU, so this shim turns it off, as chatd and `llama-server --no-repack` do.
"""

from __future__ import annotations

import runpy

import llama_cpp.llama_cpp as lib  # type: ignore[import-not-found]

_default = lib.llama_model_default_params


def _no_repack():  # type: ignore[no-untyped-def]
    params = _default()
    params.use_extra_bufts = False
    return params


lib.llama_model_default_params = _no_repack

if __name__ == "__main__":
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
