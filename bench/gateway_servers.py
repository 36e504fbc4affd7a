"""The processes the gateway benchmark measures: an nginx mock, chatd, LiteLLM proxy, Redis.

Each is a private instance on a loopback port with its files in one temp dir; `Proc`
records the seconds from spawn to the first 200 on its health path.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.gateway_overhead import SSE
from bench.servers import _tree
from bench.upstream_clients import BODY

LITELLM_VENV = Path.home() / ".cache" / "chatd-bench" / "litellm-venv"
BENCH_KEY = "sk-chatd-bench-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants, in MB."""
    total = 0
    for p in _tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        if "VmRSS:" in status:
            total += int(status.split("VmRSS:")[1].split()[0])
    return total / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used by `pid` and its descendants."""
    ticks = 0
    for p in _tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(stat[11]) + int(stat[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """A spawned server: its port, process and start time (spawn to first 200 on health)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    start_s: float = 0.0
    start_cpu_s: float = 0.0  # CPU the tree used until up: start time without the machine's load
    extra: dict[str, object] = field(default_factory=dict)

    def wait_up(self, path: str, timeout: float = 180.0) -> None:
        began = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"{self.name} not up after {timeout:.0f} s")
            time.sleep(0.02)
        self.start_cpu_s = cpu_s(self.proc.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _nginx_quote(body: bytes) -> str:
    text = body.decode()
    assert "'" not in text and "$" not in text and "\\" not in text
    return "'" + text.replace("\n", "\\n") + "'"


def nginx(tmp: Path) -> Proc:
    """nginx (one worker) answering POST {/v1,/stream/v1}/chat/completions with fixed bodies.

    `return` runs in the rewrite phase, before any content handler, so it answers POST
    as well as GET and discards the request body; the streaming upstream is a second
    path because nginx cannot branch on the body's `"stream": true`.
    """
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    prefix = tmp / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    models = b'{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"x"}]}'
    conf = f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    tcp_nodelay on;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 {_nginx_quote(BODY)};
        }}
        location = /stream/v1/chat/completions {{
            default_type text/event-stream;
            return 200 {_nginx_quote(SSE)};
        }}
        location ~ /models$ {{
            default_type application/json;
            return 200 {_nginx_quote(models)};
        }}
        location = /health {{ return 200 'ok'; }}
    }}
}}
"""
    (prefix / "nginx.conf").write_text(conf)
    cmd = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    p = Proc("nginx", port, subprocess.Popen(cmd, stderr=subprocess.DEVNULL))
    began = time.monotonic()
    p.wait_up("/health", timeout=20)
    p.start_s = time.monotonic() - began
    return p


def chatd_supports_keys() -> bool:
    """Whether this checkout's chatd has `[[keys]]` and `--redis-url` (branch gw-keys)."""
    import importlib.util

    return importlib.util.find_spec("chatd.ratelimits") is not None


def chatd(tmp: Path, mock_port: int, name: str = "chatd", redis_url: str | None = None) -> Proc:
    """A pure gateway (`--no-local-model`, one process); `redis_url` adds a key with limits."""
    data = tmp / name
    data.mkdir()
    conf = ""
    for upstream, path in (("mock", "/v1"), ("mocks", "/stream/v1")):
        conf += f'[[upstreams]]\nname = "{upstream}"\nkind = "openai"\n'
        conf += f'base_url = "http://127.0.0.1:{mock_port}{path}"\nmodels = ["m"]\n\n'
    if redis_url:
        conf += '[[keys]]\nname = "bench"\nkey_env = "CHATD_BENCH_KEY"\n'
        conf += "rpm = 1000000000\ntpm = 1000000000000\n"
    (data / "chatd.toml").write_text(conf)
    port = free_port()
    cmd = [sys.executable, "-m", "chatd.cli", "serve", "--no-local-model", "--port", str(port)]
    cmd += ["--config", str(data / "chatd.toml"), "--data-dir", str(data)]
    cmd += ["--log-level", "warning"]
    if redis_url:
        cmd += ["--redis-url", redis_url]
    env = os.environ | {"CHATD_BENCH_KEY": BENCH_KEY}
    began = time.monotonic()
    p = Proc(name, port, subprocess.Popen(cmd, env=env))
    p.wait_up("/health")
    p.start_s = time.monotonic() - began
    return p


def redis(tmp: Path) -> Proc:
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(tmp)]
    p = Proc("redis", port, subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server not up")


def ensure_litellm() -> Path:
    """LiteLLM proxy in its own venv (never chatd's): created on first use."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        python = shutil.which("python3") or sys.executable
        subprocess.run([python, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"]
        subprocess.run(pip, check=True)
    return binary


def litellm_version() -> str:
    python = str(LITELLM_VENV / "bin" / "python")
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def litellm(tmp: Path, mock_port: int) -> Proc:
    """LiteLLM proxy, one worker, models `mock` and `mock-stream` on the nginx mock.

    The model-cost map is read from the package (no fetch from GitHub at start: this
    machine has no internet, and a fetch that times out would inflate its start time).
    """
    binary = ensure_litellm()
    data = tmp / "litellm"
    data.mkdir()
    conf = "model_list:\n"
    for model, path in (("mock", "/v1"), ("mock-stream", "/stream/v1")):
        conf += f"  - model_name: {model}\n    litellm_params:\n      model: openai/m\n"
        conf += f"      api_base: http://127.0.0.1:{mock_port}{path}\n      api_key: sk-x\n"
    conf += "litellm_settings:\n  set_verbose: false\n  telemetry: false\n"
    (data / "config.yaml").write_text(conf)
    port = free_port()
    cmd = [str(binary), "--config", str(data / "config.yaml"), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--num_workers", "1"]
    env = os.environ | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
        # no auth, like the pure chatd it is compared with (which has no keys)
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    env.pop("PYTHONPATH", None)
    log = (data / "litellm.log").open("wb")
    began = time.monotonic()
    p = Proc("litellm", port, subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=data))
    p.wait_up("/health/liveliness", timeout=300)
    p.start_s = time.monotonic() - began
    p.extra["version"] = litellm_version()
    return p
