"""Live `chatd serve` processes on the default model, and clients for them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL = MODEL_ID = "smollm2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(
    name: str, proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float
) -> None:
    """Wait until `url` answers 200; RuntimeError with the log's tail if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not start:\n{log.read_text()[-4000:]}")


class Server:
    """A `chatd serve` subprocess."""

    def __init__(
        self, data_dir: Path, *args: str, env: dict[str, str] | None = None, threads: int = 2
    ) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.threads = threads
        self.env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "chatd.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--threads",
            str(self.threads),
            *self.args,
        ]
        env = {**os.environ, **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_healthy("chatd", self.proc, self.url + "/health", self.log, timeout)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self, api_key: str = "unused", **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120, **kwargs
        )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default server: default model, aliases, no API keys."""
    srv = Server(
        tmp_path_factory.mktemp("chatd"),
        "--model-name",
        "smollm2",
        "--model-name",
        "gpt-4o-mini",
        "--parallel",
        "8",
        "--ctx",
        "8192",
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One sequence at a time, no prefix cache: each request sees the same KV layout.

    llama.cpp's CPU kernels round differently for other KV layouts and batch shapes, so
    tests that compare two runs of a request token for token use this server.
    """
    srv = Server(
        tmp_path_factory.mktemp("steady"),
        "--model-name",
        MODEL_ID,
        "--parallel",
        "1",
        "--no-prefix-cache",
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="session")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c
