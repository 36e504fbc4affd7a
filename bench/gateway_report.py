"""The gateway benchmark's README section: goal figures, then every level and mode."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} ms"


def _rps(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}/s"


def _detail(res: dict[str, Any]) -> list[str]:
    rounds = res["per_round"]
    targets = list(rounds[0]["plain@1"])
    lines = [
        "| mode @ in flight | " + " | ".join(targets) + " |",
        "| --- |" + " --- |" * len(targets),
    ]
    for key in rounds[0]:
        cells = []
        for t in targets:
            vals = [r[key][t] for r in rounds]
            p50 = statistics.median(v["p50_ms"] for v in vals)
            p99 = statistics.median(v["p99_ms"] for v in vals)
            rps = statistics.median(v["rps"] for v in vals)
            cell = f"{p50:.2f} / {p99:.2f} ms, {rps:,.0f}/s"
            if key.startswith("stream"):
                cell += f", ttfb {statistics.median(v['ttfb_p50_ms'] for v in vals):.2f} ms"
            cells.append(cell)
        lines.append(f"| {key.replace('@', ' @ ')} | " + " | ".join(cells) + " |")
    return lines


def section(res: dict[str, Any]) -> str:
    f = res["figures"]
    m = res["machine"]
    start, rss = res["start_s"], res["rss_mb_after_load"]
    cpu = res.get("start_cpu_s", {})
    ratio = f["rps_ratio_chatd_over_litellm"]
    redis = (
        _ms(f["redis_added_p50_ms"])
        if res["redis_row"] == "measured"
        else "not measured: `[[keys]]` is not on this branch"
    )
    rows = [
        ("added latency p50, 1 in flight", "<= 0.5 ms", "added_p50_ms", _ms),
        ("added latency p99, 1 in flight", "<= 2 ms", "added_p99_ms", _ms),
        (
            "streaming: added time to first byte, 1 in flight",
            "<= 1 ms",
            "stream_added_ttfb_ms",
            _ms,
        ),
    ]
    lines = [
        "| figure | goal | chatd | LiteLLM | direct |",
        "| --- | --- | --- | --- | --- |",
    ]
    direct = {
        "added_p50_ms": _ms(f["direct_p50_ms_1"]) + " (p50)",
        "added_p99_ms": "",
        "stream_added_ttfb_ms": "",
    }
    for label, goal, key, fmt in rows:
        lines.append(
            f"| {label} | {goal} | {fmt(f[f'chatd_{key}'])} | {fmt(f[f'litellm_{key}'])} "
            f"| {direct[key]} |"
        )
    ratio_text = "n/a" if ratio is None else f"{ratio:.1f}x LiteLLM"
    lines += [
        f"| requests/s, one worker, 64 in flight | >= 20x LiteLLM's "
        f"| {_rps(f['chatd_rps_64'])} ({ratio_text}) | {_rps(f['litellm_rps_64'])} "
        f"| {_rps(f['direct_rps_64'])} |",
        f"| limits on with Redis: added p50, 1 in flight | <= 0.3 ms | {redis} | | |",
        f"| RSS after the load | <= 80 MB | {rss['chatd']:.0f} MB "
        f"| {rss.get('litellm', float('nan')):.0f} MB | |",
        f"| start: spawn to first 200 on /health | <= 1.5 s | {start['chatd']:.2f} s "
        f"| {start.get('litellm', float('nan')):.2f} s | |",
        f"| start, CPU seconds used until up (load-independent) | | {cpu.get('chatd', 0):.2f} s "
        f"| {cpu.get('litellm', 0):.2f} s | |",
    ]
    head = [
        f"`{res['command']}` ({res['date']}, {res['rounds']} interleaved rounds of "
        f"{res['seconds']:g} s per target and level, medians of the rounds' figures; "
        f"mock: {res['mock']}; LiteLLM {res['litellm_version']}). Machine: "
        f"{m['cpus']} CPUs shared with other work, load average {m['loadavg_before'][0]} "
        f"before and {m['loadavg_after'][0]} after, CPUs {m['cpu_busy_during']:.0%} busy "
        "during the run (the load generator and every server included).",
        "",
    ]
    detail = [
        "",
        "Every level (p50 / p99 latency, requests/s, streaming time to first byte; "
        "medians of the rounds):",
        "",
        *_detail(res),
    ]
    return "\n".join(head + lines + detail)


def write_readme(res: dict[str, Any], readme: Path, begin: str, end: str) -> None:
    """Replace the text between the markers (appended under a heading when absent)."""
    text = readme.read_text()
    block = f"{begin}\n{section(res)}\n{end}"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Gateway benchmark: chatd vs LiteLLM\n\n" + block + "\n"
    readme.write_text(text)
