"""Build the peers outside the repo: llama.cpp's tools and llama-cpp-python's server.

    python -m bench peers [--force]

Idempotent: everything lands in ~/.cache/chatd-bench (or $CHATD_BENCH_CACHE); a step whose
output already exists is skipped. The llama.cpp sources come from the llama-cpp-python sdist
pinned by chatd, so the peers run the very kernels chatd's engine runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

LCP_VERSION = "0.3.36"
TOOLS = ("llama-server", "llama-batched-bench", "llama-bench")


def cache_dir() -> Path:
    return Path(os.environ.get("CHATD_BENCH_CACHE", Path.home() / ".cache" / "chatd-bench"))


@dataclass(frozen=True)
class Peers:
    """Where the built peers live."""

    root: Path

    @property
    def src(self) -> Path:
        return self.root / f"llama_cpp_python-{LCP_VERSION}"

    @property
    def build(self) -> Path:
        return self.root / "build"

    def tool(self, name: str) -> Path:
        return self.build / "bin" / name

    @property
    def lcp_venv(self) -> Path:
        return self.root / "lcp-venv"

    @property
    def lcp_python(self) -> Path:
        return self.lcp_venv / "bin" / "python"

    def have_tools(self) -> bool:
        return all(self.tool(t).is_file() for t in TOOLS)

    def have_lcp(self) -> bool:
        if not self.lcp_python.is_file():
            return False
        probe = [str(self.lcp_python), "-c", "import llama_cpp.server, uvicorn"]
        return subprocess.run(probe, capture_output=True).returncode == 0


def _run(cmd: list[str], **kw: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def fetch_sources(p: Peers) -> None:
    """Download (pip's cache makes it free the second time) and unpack the sdist."""
    if (p.src / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        return
    dl = p.root / "sdist"
    dl.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python"]
    _run([*pip, f"llama-cpp-python=={LCP_VERSION}", "-d", str(dl)])
    archive = next(dl.glob(f"llama_cpp_python-{LCP_VERSION}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(p.root, filter="data")


def build_tools(p: Peers, jobs: int = 2) -> None:
    if p.have_tools():
        return
    fetch_sources(p)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(
        [
            "cmake",
            *gen,
            "-S",
            str(p.src / "vendor" / "llama.cpp"),
            "-B",
            str(p.build),
            "-DLLAMA_CURL=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_BUILD_TESTS=OFF",
        ]
    )
    _run(["cmake", "--build", str(p.build), f"-j{jobs}", "--target", *TOOLS])


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
    p = Peers(cache_dir())
    p.root.mkdir(parents=True, exist_ok=True)
    if force:
        shutil.rmtree(p.build, ignore_errors=True)
        shutil.rmtree(p.lcp_venv, ignore_errors=True)
    build_tools(p)
    if lcp:
        install_lcp_server(p)
    return p


def main(argv: list[str]) -> int:
    p = ensure(force="--force" in argv)
    for t in TOOLS:
        print(f"{t}: {p.tool(t)}")
    print(f"llama-cpp-python server: {p.lcp_python} -m llama_cpp.server")
    return 0
