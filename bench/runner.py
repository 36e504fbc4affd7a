"""The whole comparison: every server one at a time, repeats interleaved, results saved as we go."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import kernels, peers, prompts, quiet, scenarios, servers
from bench.servers import Server, ServerDied, Spec

RESULTS = Path(__file__).with_name("results")
NOISY = 0.5  # cores taken by other processes during a run that make it worth measuring again


@dataclass
class Plan:
    """What one run measures; `quick()` is the smoke run."""

    mode: str = "full"
    repeats: int = 3
    levels: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    wide_levels: list[int] = field(default_factory=lambda: [8, 16, 32])
    peer_wide_levels: list[int] = field(default_factory=lambda: [16, 32])
    rounds: int = 2  # requests per stream at levels <= 8 (one round above)
    lcp_levels: list[int] = field(default_factory=lambda: [1, 8])
    lengths: list[int] = field(default_factory=lambda: [128, 256, 512, 1024, 2048, 4096])
    latency_repeats: int = 3
    kernel_levels: list[int] = field(default_factory=lambda: [1, 8, 16, 32])
    quiet_wait: float = 90.0
    peers: bool = True

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            mode="quick",
            repeats=1,
            levels=[1, 4, 8],
            wide_levels=[32],
            peer_wide_levels=[],
            rounds=1,
            lcp_levels=[1],
            lengths=[128, 512, 2048],
            latency_repeats=1,
            kernel_levels=[1, 8],
            quiet_wait=10.0,
        )


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    flags = Path("/proc/cpuinfo").read_text()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "amx": "amx_tile" in flags,
        "python": platform.python_version(),
        "chatd_commit": commit,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


class Runner:
    """Runs a `Plan`, writing `results` to `out` after every step."""

    def __init__(self, plan: Plan, out: Path) -> None:
        self.plan = plan
        self.out = out
        self.model = prompts.default_model()
        self.logs = Path(tempfile.mkdtemp(prefix="chatd-bench-logs-"))
        self.peers = peers.ensure() if plan.peers else None
        self.results: dict[str, Any] = {
            "meta": {**machine(), "mode": plan.mode, "plan": asdict(plan), "threads": 2},
            "scaling": {},
            "rss": {},
            "shared_prefix": {},
            "prompt_length": {},
            "prediction": None,
            "kernels": {},
            "failures": {},
            "quiet": [],
            "commands": {},
        }
        self.offset = 0

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=1))

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    @contextmanager
    def server(self, spec: Spec) -> Iterator[Server | None]:
        """A started, warmed-up server, or None (failure recorded) when it will not serve."""
        self.results["commands"][spec.name] = spec.cmd
        q = quiet.wait_quiet(self.plan.quiet_wait)
        self.results["quiet"].append({"server": spec.name, **q})
        self.log(f"start {spec.name} (cpu busy {q['busy']:.0%}, waited {q['waited_s']}s)")
        srv = Server(spec, self.logs)
        try:
            try:
                srv.__enter__()
                scenarios.warm_up(srv, self.model)
            except (ServerDied, RuntimeError) as exc:
                why = srv.death() if srv.proc and not srv.alive() else str(exc)
                self.results["failures"][spec.name] = why
                self.log(f"FAILED {spec.name}: {why}")
                yield None
                return
            yield srv
            if not srv.alive():
                self.results["failures"].setdefault(spec.name, srv.death())
        finally:
            srv.stop()
            self.save()

    def scaling(self, spec: Spec, levels: list[int], key: str) -> bool:
        with self.server(spec) as srv:
            if srv is None:
                return False
            rss = {"warm_mb": srv.rss_mb()}
            for level in levels:
                r = self.measure(srv, level)
                self.results["scaling"].setdefault(key, {}).setdefault(str(level), []).append(r)
                self.log(
                    f"  {key} x{level}: {r['tok_s']:.1f} tok/s, ttft p50 "
                    f"{_ms(r['ttft_p50'])} p99 {_ms(r['ttft_p99'])}, others {r['foreign_cores']}"
                )
                if r["errors"] or not srv.alive():
                    self.log(f"  errors: {r['errors']}")
                    break
            rss["loaded_mb"] = srv.rss_mb()
            self.results["rss"].setdefault(key, []).append(rss)
        return True

    def measure(self, srv: Server, level: int) -> dict[str, Any]:
        """One level; measured again (once) after a quiet wait if others took the CPU."""
        rounds = self.plan.rounds if level <= 8 else 1
        r = scenarios.scaling(srv, self.model, level, rounds, self.offset)
        self.offset += r["requests"]
        if r["foreign_cores"] > NOISY and not r["errors"]:
            self.log(f"  x{level}: others took {r['foreign_cores']} cores; again when quiet")
            quiet.wait_quiet(self.plan.quiet_wait)
            again = scenarios.scaling(srv, self.model, level, rounds, self.offset)
            self.offset += again["requests"]
            if again["foreign_cores"] < r["foreign_cores"]:
                again["noisy_attempt"] = {k: r[k] for k in ("tok_s", "foreign_cores")}
                r = again
        return r

    def throughput(self) -> None:
        p, m = self.plan, self.model
        configs: list[tuple[str, Callable[[], Spec], list[int]]] = [
            ("chatd@8", lambda: servers.chatd(m, 8), p.levels),
            ("chatd@32", lambda: servers.chatd(m, 32), p.wide_levels),
        ]
        if self.peers:
            pe = self.peers
            configs.insert(1, ("llama-server@8", lambda: servers.llama_server(pe, m, 8), p.levels))
            if p.peer_wide_levels:
                configs.append(
                    ("llama-server@32", lambda: servers.llama_server(pe, m, 32), p.peer_wide_levels)
                )
        dead: set[str] = set()
        for rep in range(p.repeats):
            order = configs if rep % 2 == 0 else configs[::-1]
            for key, make, levels in order:
                if key in dead or not levels:
                    continue
                self.log(f"repeat {rep + 1}/{p.repeats}: {key}")
                if not self.scaling(make(), levels, key):
                    dead.add(key)

    def lcp(self) -> None:
        """llama-cpp-python's server as shipped; if it crashes, again with repacking off."""
        assert self.peers is not None
        for repack in (True, False):
            spec = servers.lcp_server(self.peers, self.model, repack=repack)
            key = spec.name
            if self.scaling(spec, self.plan.lcp_levels, key):
                return

    def latency(self) -> None:
        """Shared system prompt, prompt lengths, predicted outputs: one server each, ctx 16k."""
        specs = [servers.chatd(self.model, 8, ctx=16384)]
        if self.peers:
            specs.append(servers.llama_server(self.peers, self.model, 8, ctx=16384))
        for spec in specs:
            with self.server(spec) as srv:
                if srv is None:
                    continue
                self._latency(srv)

    def _latency(self, srv: Server) -> None:
        name, seed = srv.kind, 1000 * len(self.results["shared_prefix"]) + 7
        for i in range(self.plan.latency_repeats):
            r = scenarios.shared_prefix(srv, self.model, seed + i)
            self.results["shared_prefix"].setdefault(name, []).append(r)
            self.log(f"  {name} shared prefix: {_ms(r['first_ttft'])} -> {_ms(r['second_ttft'])}")
        for i in range(self.plan.latency_repeats):
            for n in self.plan.lengths:
                r = scenarios.prompt_length(srv, self.model, n, seed + 100 * i + n)
                self.results["prompt_length"].setdefault(name, {}).setdefault(str(n), []).append(r)
                self.log(f"  {name} prompt {n}: ttft {_ms(r['ttft'])}")
        if name == "chatd":
            r = scenarios.prediction(srv, self.model, self.plan.latency_repeats)
            self.results["prediction"] = r
            self.log(f"  prediction: { ({k: v for k, v in r.items() if k != 'walls'}) }")

    def kernels(self) -> None:
        assert self.peers is not None
        self.log("llama-bench")
        reps = min(self.plan.repeats, 3)
        self.results["kernels"]["llama_bench"] = kernels.llama_bench(self.peers, self.model, reps)
        pt = _median_prompt_tokens(self.results["scaling"].get("chatd@8", {})) or 42
        levels = self.plan.kernel_levels
        self.log(f"llama-batched-bench: {pt} prompt tokens, 128 generated, {levels} sequences")
        self.results["kernels"]["batched_bench"] = kernels.batched_bench(
            self.peers, self.model, pt, 128, levels
        )
        self.save()

    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        self.throughput()
        if self.peers:
            self.lcp()
        self.latency()
        if self.peers:
            q = quiet.wait_quiet(self.plan.quiet_wait)
            self.results["quiet"].append({"server": "kernels", **q})
            self.kernels()
        self.results["meta"]["duration_s"] = round(time.monotonic() - t0)
        self.save()
        return self.results


def _median_prompt_tokens(by_level: dict[str, list[dict[str, Any]]]) -> int | None:
    counts = [r["prompt_tokens"] for runs in by_level.values() for r in runs if r["prompt_tokens"]]
    return int(statistics.median(counts)) if counts else None


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def install_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every started server is stopped."""

    def _raise(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
