"""Build the peers outside the repo: llama.cpp's tools and llama-cpp-python's server.

    python -m bench peers [--force]   (--force: reinstall llama-cpp-python's server)

Idempotent: llama.cpp's tools are built by scripts/llama_server.sh (its cache, shared with the
tests), llama-cpp-python's server lands in ~/.cache/chatd-bench (or $CHATD_BENCH_CACHE); a step
whose output already exists is skipped. The llama.cpp sources come from the llama-cpp-python
sdist pinned by chatd, so the peers run the very kernels chatd's engine runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LCP_VERSION = "0.3.36"
TOOLS = ("llama-server", "llama-batched-bench", "llama-bench")
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "llama_server.sh"


def cache_dir() -> Path:
    return Path(os.environ.get("CHATD_BENCH_CACHE", Path.home() / ".cache" / "chatd-bench"))


@dataclass(frozen=True)
class Peers:
    """Where the built peers live: llama.cpp's tools in scripts/llama_server.sh's build."""

    root: Path
    build: Path

    def tool(self, name: str) -> Path:
        return self.build / "bin" / name

    @property
    def lcp_venv(self) -> Path:
        return self.root / "lcp-venv"

    @property
    def lcp_python(self) -> Path:
        return self.lcp_venv / "bin" / "python"

    def have_lcp(self) -> bool:
        if not self.lcp_python.is_file():
            return False
        probe = [str(self.lcp_python), "-c", "import llama_cpp.server, uvicorn"]
        return subprocess.run(probe, capture_output=True).returncode == 0


def _run(cmd: list[str], **kw: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def build_tools() -> Path:
    """llama.cpp's tools, built once by the script tests use too; returns the build dir."""
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", str(SCRIPT), *TOOLS[1:]], check=True, stdout=subprocess.PIPE, text=True, env=env
    )
    return Path(out.stdout.strip()).parent.parent


def install_lcp_server(p: Peers) -> None:
    """llama-cpp-python's own server, in a venv of its own (pip's wheel cache keeps it quick)."""
    if p.have_lcp():
        return
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(p.lcp_venv)])
    _run(
        [
            str(p.lcp_python),
            "-m",
            "pip",
            "install",
            f"llama-cpp-python[server]=={LCP_VERSION}",
        ],
        env={**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)},
    )


def ensure(force: bool = False, lcp: bool = True) -> Peers:
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if force:
        shutil.rmtree(root / "lcp-venv", ignore_errors=True)
    p = Peers(root, build_tools())
    if lcp:
        install_lcp_server(p)
    return p


def main(argv: list[str]) -> int:
    p = ensure(force="--force" in argv)
    for t in TOOLS:
        print(f"{t}: {p.tool(t)}")
    print(f"llama-cpp-python server: {p.lcp_python} -m llama_cpp.server")
    return 0
