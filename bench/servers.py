"""Start, probe and stop the servers under test, one at a time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.peers import Peers

THREADS = 2
CHATD = Path(sys.executable).with_name("chatd")
LCP = "llama-cpp-python"
SHIM = "lcp_norepack.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Spec:
    """How to start one server: a name for the tables and its command line."""

    name: str
    cmd: list[str]
    port: int
    ready_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def chatd(model: Path, parallel: int, ctx: int | None = None) -> Spec:
    port = free_port()
    data = tempfile.mkdtemp(prefix="chatd-bench-")
    cmd = [str(CHATD), "serve", "--port", str(port), "--threads", str(THREADS)]
    cmd += ["--parallel", str(parallel), "--data-dir", data, "--model", str(model)]
    cmd += ["--log-level", "warning"]
    if ctx:
        cmd += ["--ctx", str(ctx)]
    return Spec("chatd", cmd, port)


def llama_server(peers: Peers, model: Path, parallel: int, ctx: int | None = None) -> Spec:
    """llama.cpp's server at its defaults but for threads, slots, context and no repacking."""
    port = free_port()
    ctx = ctx or 8192
    cmd = [str(peers.tool("llama-server")), "-m", str(model), "--port", str(port)]
    cmd += ["-t", str(THREADS), "-tb", str(THREADS), "-np", str(parallel), "-c", str(ctx)]
    cmd += ["--kv-unified", "--no-repack", "--no-webui", "-lv", "1"]
    return Spec("llama-server", cmd, port)


def lcp_server(peers: Peers, model: Path, ctx: int | None = None, repack: bool = True) -> Spec:
    """llama-cpp-python's server: one request at a time; never cut a running stream.

    `repack=False` starts it through bench/lcp_norepack.py: the server has no option for it.
    """
    port = free_port()
    py = [str(peers.lcp_python), "-P"]
    launch = ["-m", "llama_cpp.server"] if repack else [str(Path(__file__).with_name(SHIM))]
    cmd = [*py, *launch, "--model", str(model), "--port", str(port)]
    cmd += ["--n_threads", str(THREADS), "--n_threads_batch", str(THREADS)]
    cmd += ["--n_ctx", str(ctx or 8192), "--interrupt_requests", "False", "--verbose", "False"]
    name = LCP if repack else LCP + " (no repack)"
    return Spec(name, cmd, port, ready_path="/v1/models")


class ServerDied(RuntimeError):
    pass


class Server:
    """A running server process; use as a context manager."""

    def __init__(self, spec: Spec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}-{spec.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.model_id = "default"

    @property
    def kind(self) -> str:
        return self.spec.name

    def __enter__(self) -> Server:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.spec.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.spec.env},
            start_new_session=True,
        )
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        return self.spec.base

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def death(self) -> str:
        """Why the process ended, with the log's tail."""
        assert self.proc is not None
        rc = self.proc.poll()
        how = f"signal {-rc} ({signal.Signals(-rc).name})" if rc and rc < 0 else f"exit {rc}"
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        last = lines[-1][:160] if lines else "(empty)"
        return f"{self.spec.name} died: {how}; last log line: {last}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        url = self.base + self.spec.ready_path
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerDied(self.death())
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    models = httpx.get(self.base + "/v1/models", timeout=5.0).json()
                    self.model_id = models["data"][0]["id"]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ServerDied(f"{self.spec.name} not ready after {timeout:.0f}s")

    def rss_mb(self) -> float | None:
        """Resident memory of the server and its children, in MB."""
        if not self.alive():
            return None
        assert self.proc is not None
        return sum(_rss_kb(pid) for pid in _tree(self.proc.pid)) / 1024

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, ()))
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
