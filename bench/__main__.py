"""chatd's benchmarks against llama.cpp's own server and llama-cpp-python's server.

python -m bench [run] [--quick] [--repeats N] [--no-peers]  measure; JSON + README + plot
python -m bench peers [--force]                              build the peers only
python -m bench report [RESULTS.json ...]                    README + plot (repeats pooled)
python -m bench gateway [--rounds N] [--no-litellm]          chatd vs LiteLLM as gateways
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from bench import peers, report
from bench.quiet import bench_lock
from bench.runner import RESULTS, Plan, Runner, install_sigterm


def latest() -> Path:
    files = sorted(RESULTS.glob("*.json"))
    if not files:
        raise SystemExit("no results yet: python -m bench")
    return files[-1]


def publish(res: dict[str, object]) -> None:
    report.write_readme(res)  # type: ignore[arg-type]
    report.plot(res)  # type: ignore[arg-type]
    print(report.section(res))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["peers"]:
        return peers.main(argv[1:])
    if argv[:1] == ["gateway"]:
        from bench import gateway

        return gateway.main(argv[1:])
    if argv[:1] == ["report"]:
        paths = [Path(a) for a in argv[1:]] or [latest()]
        publish(report.merge([json.loads(p.read_text()) for p in paths]))
        return 0
    if argv[:1] == ["run"]:
        argv = argv[1:]
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a ~3 minute smoke run")
    ap.add_argument("--repeats", type=int, help="repeats of the throughput runs")
    ap.add_argument("--quiet-wait", type=float, help="seconds to wait for idle CPUs per server")
    ap.add_argument("--levels", help="comma list for the --parallel 8 servers (empty: skip them)")
    ap.add_argument("--no-peers", action="store_true", help="chatd only (no build, no peers)")
    ap.add_argument("--out", type=Path, help="results file (default bench/results/DATE.json)")
    ap.add_argument("--no-publish", action="store_true", help="do not touch README.md/scaling.png")
    args = ap.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    if args.repeats:
        plan.repeats = args.repeats
    plan.peers = not args.no_peers
    if args.levels is not None:
        plan.levels = [int(x) for x in args.levels.split(",") if x]
    if args.quiet_wait is not None:
        plan.quiet_wait = args.quiet_wait
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    out = args.out or RESULTS / f"{stamp}-{plan.mode}.json"
    install_sigterm()
    with bench_lock():
        res = Runner(plan, out).run()
    print(f"results: {out}")
    if not args.no_publish:
        publish(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
