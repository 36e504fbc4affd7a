"""chatd as a gateway against LiteLLM proxy and a direct client, side by side in one run.

`python -m bench gateway [--rounds 3] [--seconds 2] [--no-litellm] [--no-publish]
[--report RESULTS.json]`
(or `make bench-gateway ARGS=...`): an nginx mock upstream serving a fixed
`chat.completion` body and a fixed SSE stream, a pure-gateway chatd (`--no-local-model`,
one process), chatd with a rate-limited key on Redis (only where this checkout has
`[[keys]]`), LiteLLM proxy (one worker, its own venv), and a raw-socket load generator
at 1, 16 and 64 in flight, plain and streaming. Every (mode, level) runs every target
back to back, the targets' order rotating each round, so the shared machine's noise hits
all alike; each figure is the median of the rounds' figures. Writes
bench/results/gateway-DATE.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from bench import gateway_servers as srv
from bench.gateway_load import Sample, Target, check, load
from bench.quiet import _cpu_jiffies, bench_lock
from bench.runner import RESULTS
from bench.upstream_clients import REQUEST

LEVELS = (1, 16, 64)
MODES = ("plain", "stream")
README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- gateway-bench:begin -->", "<!-- gateway-bench:end -->"


def build_targets(servers: dict[str, srv.Proc], stream: bool) -> list[Target]:
    body = orjson.loads(REQUEST) | ({"stream": True} if stream else {})
    out = [
        Target(
            "direct",
            servers["nginx"].port,
            "/stream/v1/chat/completions" if stream else "/v1/chat/completions",
            orjson.dumps(body),
        )
    ]
    model = "mocks/m" if stream else "mock/m"
    out.append(Target("chatd", servers["chatd"].port, "/v1/chat/completions", _with(body, model)))
    if "chatd-redis" in servers:
        auth = {"authorization": f"Bearer {srv.BENCH_KEY}"}
        port = servers["chatd-redis"].port
        body_ = _with(body, model)
        out.append(Target("chatd-redis", port, "/v1/chat/completions", body_, auth))
    if "litellm" in servers:
        model = "mock-stream" if stream else "mock"
        port = servers["litellm"].port
        out.append(Target("litellm", port, "/v1/chat/completions", _with(body, model)))
    return out


def _with(body: dict[str, object], model: str) -> bytes:
    return orjson.dumps(body | {"model": model})


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] if ordered else float("nan")


def summarise(s: Sample) -> dict[str, float]:
    return {
        "p50_ms": p(s.latencies, 0.5) * 1000,
        "p99_ms": p(s.latencies, 0.99) * 1000,
        "ttfb_p50_ms": p(s.ttfb, 0.5) * 1000,
        "rps": s.done / s.window_s,
        "n": len(s.latencies),
        "errors": s.errors,
        "overhead_header_p50_ms": p(s.overhead_ms, 0.5) if s.overhead_ms else float("nan"),
    }


def med(values: list[float]) -> float | None:
    values = [v for v in values if v == v]
    return round(statistics.median(values), 4) if values else None


def figures(rounds: list[dict[str, dict[str, dict[str, float]]]]) -> dict[str, object]:
    """Goal figures, each the median over rounds of a difference taken within the round."""

    def per_round(key: str, target: str, field: str) -> list[float]:
        return [r[key][target][field] for r in rounds if target in r[key]]

    def diff(key: str, a: str, b: str, field: str) -> float | None:
        pairs = [r[key] for r in rounds if a in r[key] and b in r[key]]
        return med([x[a][field] - x[b][field] for x in pairs])

    out: dict[str, object] = {}
    for gw in ("chatd", "litellm"):
        out[f"{gw}_added_p50_ms"] = diff("plain@1", gw, "direct", "p50_ms")
        out[f"{gw}_added_p99_ms"] = diff("plain@1", gw, "direct", "p99_ms")
        out[f"{gw}_stream_added_ttfb_ms"] = diff("stream@1", gw, "direct", "ttfb_p50_ms")
        out[f"{gw}_stream_added_p50_ms"] = diff("stream@1", gw, "direct", "p50_ms")
    for gw in ("direct", "chatd", "litellm", "chatd-redis"):
        out[f"{gw}_rps_64"] = med(per_round("plain@64", gw, "rps"))
        out[f"{gw}_stream_rps_64"] = med(per_round("stream@64", gw, "rps"))
        out[f"{gw}_p50_ms_1"] = med(per_round("plain@1", gw, "p50_ms"))
    out["chatd_overhead_header_p50_ms"] = med(
        per_round("plain@1", "chatd", "overhead_header_p50_ms")
    )
    out["redis_added_p50_ms"] = diff("plain@1", "chatd-redis", "chatd", "p50_ms")
    ratios = [
        r["plain@64"]["chatd"]["rps"] / r["plain@64"]["litellm"]["rps"]
        for r in rounds
        if "litellm" in r["plain@64"] and r["plain@64"]["litellm"]["rps"]
    ]
    out["rps_ratio_chatd_over_litellm"] = med(ratios)
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="chatd-gwbench-"))
    servers: dict[str, srv.Proc] = {}
    load_before = os.getloadavg()
    try:
        servers["nginx"] = srv.nginx(tmp)
        servers["chatd"] = srv.chatd(tmp, servers["nginx"].port)
        print(f"chatd up in {servers['chatd'].start_s:.2f} s", flush=True)
        keys = srv.chatd_supports_keys()
        if keys:
            servers["redis"] = srv.redis(tmp)
            url = f"redis://127.0.0.1:{servers['redis'].port}/0"
            servers["chatd-redis"] = srv.chatd(tmp, servers["nginx"].port, "chatd-redis", url)
        else:
            print("no [[keys]] in this checkout (branch gw-keys): Redis-limits row skipped")
        if not args.no_litellm:
            servers["litellm"] = srv.litellm(tmp, servers["nginx"].port)
            print(f"LiteLLM up in {servers['litellm'].start_s:.2f} s", flush=True)
        rss_idle = {name: s.rss_mb() for name, s in servers.items()}
        runner = asyncio.Runner(loop_factory=_loop_factory())
        for stream in (False, True):
            for target in build_targets(servers, stream):
                expect = b"chat.completion.chunk" if stream else b'"chat.completion"'
                runner.run(check(target, expect))
                runner.run(load(target, 4, 1.0, 0.5))  # warm pools, caches, JITs
        busy0, total0 = _cpu_jiffies()
        began = time.monotonic()
        rounds: list[dict[str, dict[str, dict[str, float]]]] = []
        for i in range(args.rounds):
            this: dict[str, dict[str, dict[str, float]]] = {}
            for mode in MODES:
                targets = build_targets(servers, mode == "stream")
                for level in LEVELS:
                    order = targets[i % len(targets) :] + targets[: i % len(targets)]
                    key = f"{mode}@{level}"
                    this[key] = {}
                    for target in order:
                        sample = runner.run(load(target, level, args.seconds, args.warmup))
                        this[key][target.name] = summarise(sample)
                    line = "  ".join(
                        f"{t}: p50 {v['p50_ms']:.2f} ms p99 {v['p99_ms']:.2f} "
                        f"ttfb {v['ttfb_p50_ms']:.2f} {v['rps']:.0f}/s"
                        for t, v in this[key].items()
                    )
                    print(f"round {i + 1} {key:9s} {line}", flush=True)
            rounds.append(this)
        busy1, total1 = _cpu_jiffies()
        runner.close()
        rss_after = {name: s.rss_mb() for name, s in servers.items()}
        res: dict[str, object] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m bench gateway", *args.argv]),
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "duration_s": round(time.monotonic() - began, 1),
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                "cpu_busy_during": round((busy1 - busy0) / max(total1 - total0, 1), 3),
            },
            "mock": "nginx " + _nginx_version(),
            "litellm_version": servers["litellm"].extra.get("version")
            if "litellm" in servers
            else None,
            "redis_row": "measured" if keys else "skipped: no [[keys]] on this branch",
            "start_s": {n: round(s.start_s, 3) for n, s in servers.items() if n != "redis"},
            "start_cpu_s": {n: round(s.start_cpu_s, 3) for n, s in servers.items() if n != "redis"},
            "rss_mb_idle": {n: round(v, 1) for n, v in rss_idle.items()},
            "rss_mb_after_load": {n: round(v, 1) for n, v in rss_after.items()},
            "per_round": rounds,
        }
        res["figures"] = figures(rounds)
        return res
    finally:
        for s in reversed(list(servers.values())):
            s.stop()


def _loop_factory() -> object:
    import uvloop

    return uvloop.new_event_loop


def _nginx_version() -> str:
    import subprocess

    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    return out.strip().rsplit("/", 1)[-1]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench gateway", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="measured seconds per segment")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds per segment")
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--no-publish", action="store_true", help="do not touch bench/README.md")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--report", type=Path, help="only rewrite the README from this results file")
    args = ap.parse_args(argv)
    args.argv = argv
    from bench.gateway_report import section, write_readme

    if args.report:
        write_readme(json.loads(args.report.read_text()), README, BEGIN, END)
        return 0
    with bench_lock():
        res = run(args)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    out = args.out or RESULTS / f"gateway-{stamp}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"results: {out}")
    print(section(res))
    if not args.no_publish:
        write_readme(res, README, BEGIN, END)
    return 0
