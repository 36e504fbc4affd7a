"""llama.cpp's `llama-server` on the default model: a real third-party upstream for tests.

It speaks Chat Completions (`/v1/chat/completions`, an OpenAI-kind upstream) and the
Messages API (`/v1/messages`, an Anthropic-kind upstream). The binary comes from
$CHATD_TEST_LLAMA_SERVER (set by `make test`) or scripts/llama_server.sh (builds it once).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import cache
from pathlib import Path

from chatd.engine.runtime import default_model_path
from tests.conftest import ROOT, free_port, wait_healthy


@cache
def binary() -> Path:
    given = os.environ.get("CHATD_TEST_LLAMA_SERVER")
    if given:
        return Path(given)
    script = ROOT / "scripts" / "llama_server.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True, env=env
    )
    return Path(out.stdout.strip().splitlines()[-1])


def has_amx() -> bool:
    """AMX CPUs repack weights into a buffer type that crashes on the Q4_1 model."""
    try:
        return " amx_" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


class LlamaServer:
    """A `llama-server` subprocess on a free port; a context manager."""

    def __init__(self, log_dir: Path, parallel: int = 2, ctx: int = 4096) -> None:
        self.port = free_port()
        self.log = log_dir / f"llama-server-{self.port}.log"
        self.cmd = [str(binary()), "-m", str(default_model_path()), "--port", str(self.port)]
        self.cmd += ["--host", "127.0.0.1", "--jinja", "-t", "2", "-tb", "2"]
        self.cmd += ["-np", str(parallel), "-c", str(ctx * parallel), "--no-webui", "-lv", "1"]
        if has_amx():
            self.cmd.append("--no-repack")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LlamaServer:
        log_file = self.log.open("ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_healthy("llama-server", self.proc, self.url + "/health", self.log, 120)
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
