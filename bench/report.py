"""Turn a results JSON into the README table and bench/scaling.png."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import percentile

README = Path(__file__).with_name("README.md")
PLOT = Path(__file__).with_name("scaling.png")
NOISY = 0.5  # cores taken by others that make a figure suspect
START, END = "<!-- results:start -->", "<!-- results:end -->"


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several results files as one: their repeats pooled, the newest wins for single values."""
    out: dict[str, Any] = {**runs[-1], "scaling": {}, "rss": {}, "shared_prefix": {}}
    out["prompt_length"], out["quiet"], out["failures"] = {}, [], {}
    for res in runs:
        for key, levels in res["scaling"].items():
            for level, reps in levels.items():
                out["scaling"].setdefault(key, {}).setdefault(level, []).extend(reps)
        for field in ("rss", "shared_prefix"):
            for key, reps in res[field].items():
                out[field].setdefault(key, []).extend(reps)
        for key, by_n in res["prompt_length"].items():
            for n, reps in by_n.items():
                out["prompt_length"].setdefault(key, {}).setdefault(n, []).extend(reps)
        out["quiet"] += res.get("quiet", [])
        out["failures"].update(res.get("failures", {}))
        out["kernels"] = res.get("kernels") or out.get("kernels", {})
        out["prediction"] = res.get("prediction") or out.get("prediction")
    out["meta"] = {**runs[-1]["meta"], "merged": [r["meta"]["date"] for r in runs]}
    out["meta"]["duration_s"] = sum(r["meta"].get("duration_s", 0) for r in runs)
    return out


def _med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


class Figures:
    """Medians over repeats, read from one results dict."""

    def __init__(self, res: dict[str, Any]) -> None:
        self.res = res
        self.scaling: dict[str, dict[str, list[dict[str, Any]]]] = res["scaling"]

    def lcp_key(self) -> str | None:
        keys = [k for k in self.scaling if k.startswith("llama-cpp-python")]
        return keys[-1] if keys else None

    def tok_s(self, key: str | None, level: int) -> float | None:
        runs = self.scaling.get(key or "", {}).get(str(level), [])
        return _med([r["tok_s"] for r in runs if not r["errors"]])

    def spread(self, key: str, level: int) -> tuple[float, float] | None:
        vals = [r["tok_s"] for r in self.scaling.get(key, {}).get(str(level), [])]
        return (min(vals), max(vals)) if vals else None

    def others(self, key: str, level: int) -> float | None:
        """Median cores other processes took during the runs of a level."""
        return _med([r["foreign_cores"] for r in self.scaling.get(key, {}).get(str(level), [])])

    def ttft(self, key: str, level: int, q: float) -> float | None:
        """Percentile over the TTFTs of every repeat pooled."""
        pooled = sorted(
            t for r in self.scaling.get(key, {}).get(str(level), []) for t in r["ttfts"]
        )
        return percentile(pooled, q) if pooled else None

    def kernel(self, *path: str) -> float | None:
        node: Any = self.res.get("kernels", {})
        for p in path:
            if not isinstance(node, dict) or p not in node:
                return None
            node = node[p]
        return float(node) if isinstance(node, int | float) else None

    def shared(self, server: str, field: str) -> float | None:
        return _med([r.get(field) for r in self.res["shared_prefix"].get(server, [])])

    def length(self, server: str, n: int) -> float | None:
        return _med([r["ttft"] for r in self.res["prompt_length"].get(server, {}).get(str(n), [])])

    def rss(self, key: str) -> float | None:
        return _med(
            [max(r["warm_mb"] or 0, r["loaded_mb"] or 0) for r in self.res["rss"].get(key, [])]
        )


@dataclass
class Row:
    figure: str
    chatd: str
    reference: str
    ratio: str
    goal: str
    met: bool | None


def _n(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{unit}"


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 1000:.0f} ms"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _check(v: float | None, ok: Callable[[float], bool]) -> bool | None:
    return None if v is None else ok(v)


def rows(f: Figures) -> list[Row]:
    out: list[Row] = []
    c1, s1 = f.tok_s("chatd@8", 1), f.tok_s("llama-server@8", 1)
    tg = f.kernel("llama_bench", "tg128", "tok_s")
    r1 = _ratio(c1, s1)
    ref1 = f"llama-server {_n(s1)}; llama-bench tg128 {_n(tg)}"
    out.append(
        Row(
            "1 stream, tokens/s",
            _n(c1),
            ref1,
            f"{_n(r1, 'x', 2)}; {_n(_ratio(c1, tg), 'x', 2)} of tg128",
            ">= 1.0x llama-server",
            _check(r1, lambda r: r >= 1.0),
        )
    )
    c8, s8 = f.tok_s("chatd@8", 8), f.tok_s("llama-server@8", 8)
    bb = f.kernel("batched_bench", "by_sequences", "8", "gen_tok_s")
    lcp = f.tok_s(f.lcp_key(), 8)
    rs, rb, rl = _ratio(c8, s8), _ratio(c8, bb), _ratio(c8, lcp)
    out.append(
        Row(
            "8 concurrent streams, total tokens/s",
            _n(c8),
            f"llama-server -np 8 {_n(s8)}; batched-bench {_n(bb)}; llama-cpp-python {_n(lcp)}",
            f"{_n(rs, 'x', 2)}; {_n(rb, 'x', 2)}; {_n(rl, 'x', 1)}",
            ">= 1.0x llama-server; >= 0.95x batched-bench; >= 4x llama-cpp-python",
            None if None in (rs, rb, rl) else bool(rs >= 1.0 and rb >= 0.95 and rl >= 4),
        )
    )
    wide = [f.tok_s("chatd@32", n) for n in (8, 16, 32)]
    ws = [w for w in wide if w is not None]
    rising = len(ws) >= 2 and all(b > a for a, b in itertools.pairwise(ws))
    sw = [f.tok_s("llama-server@32", n) for n in (16, 32)]
    out.append(
        Row(
            "8 -> 16 -> 32 streams (`--parallel 32`), total tokens/s",
            " -> ".join(_n(w) for w in wide),
            f"llama-server -np 32: 16 {_n(sw[0])}, 32 {_n(sw[1])}",
            "",
            "keeps rising",
            rising if len(ws) >= 2 else None,
        )
    )
    t8, ts8 = f.ttft("chatd@8", 8, 50), f.ttft("llama-server@8", 8, 50)
    rt = _ratio(t8, ts8)
    out.append(
        Row(
            "time to first token p50 at 8 concurrent",
            _ms(t8),
            f"llama-server {_ms(ts8)}",
            _n(rt, "x", 2),
            "<= llama-server's",
            _check(rt, lambda r: r <= 1.0),
        )
    )
    first, second = f.shared("chatd", "first_ttft"), f.shared("chatd", "second_ttft")
    rsh = f.shared("chatd", "ratio")
    lsr = f.shared("llama-server", "ratio")
    out.append(
        Row(
            "TTFT, 1,500-token shared system prompt, second request",
            f"{_ms(first)} -> {_ms(second)}",
            f"llama-server {_ms(f.shared('llama-server', 'first_ttft'))} -> "
            f"{_ms(f.shared('llama-server', 'second_ttft'))} ({_n(lsr, 'x', 2)})",
            _n(rsh, "x", 2),
            "<= 0.2x the first request's",
            _check(rsh, lambda r: r <= 0.2),
        )
    )
    pred = f.res.get("prediction") or {}
    if pred.get("skipped") or not pred:
        out.append(
            Row(
                "edit task, 90% of the output predicted, wall time",
                "skipped",
                pred.get("skipped", "not run"),
                "",
                "<= 0.5x without `prediction`",
                None,
            )
        )
    else:
        rp = pred.get("ratio")
        same = "identical" if pred.get("identical_text") else "DIFFERENT text"
        out.append(
            Row(
                "edit task, 90% of the output predicted, wall time",
                f"{_ms(pred['wall_with'])} vs {_ms(pred['wall_without'])}",
                f"{pred.get('output_tokens')} tokens, {pred.get('accepted')} accepted / "
                f"{pred.get('rejected')} rejected, {same}",
                _n(rp, "x", 2),
                "<= 0.5x without `prediction`",
                _check(rp, lambda r: r <= 0.5),
            )
        )
    p99 = f.ttft("chatd@8", 8, 99)
    rq = _ratio(p99, t8)
    sp99 = f.ttft("llama-server@8", 8, 99)
    out.append(
        Row(
            "p99 time to first token at 8 concurrent",
            f"{_ms(p99)} (p50 {_ms(t8)})",
            f"llama-server {_ms(sp99)} ({_n(_ratio(sp99, ts8), 'x', 2)})",
            _n(rq, "x", 2),
            "<= 3x its p50",
            _check(rq, lambda r: r <= 3.0),
        )
    )
    mem = f.rss("chatd@8")
    out.append(
        Row(
            "server memory (RSS), default model, after load",
            _n(mem, " MB", 0),
            f"llama-server {_n(f.rss('llama-server@8'), ' MB', 0)}",
            "",
            "<= 400 MB",
            _check(mem, lambda m: m <= 400),
        )
    )
    return out


def _mark(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def figures_table(f: Figures) -> str:
    lines = [
        "| figure | chatd | reference | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows(f):
        lines.append(
            f"| {r.figure} | {r.chatd} | {r.reference} | {r.ratio} | {r.goal} | {_mark(r.met)} |"
        )
    return "\n".join(lines)


SERIES = [
    ("chatd@8", "chatd --parallel 8"),
    ("chatd@32", "chatd --parallel 32"),
    ("llama-server@8", "llama-server -np 8"),
    ("llama-server@32", "llama-server -np 32"),
]


def scaling_table(f: Figures) -> str:
    series = [(k, n) for k, n in SERIES if k in f.scaling]
    if key := f.lcp_key():
        series.append((key, key))
    levels = sorted({int(lv) for k, _ in series for lv in f.scaling[k]})
    head = "| streams | " + " | ".join(n for _, n in series) + " | llama-batched-bench |"
    lines = [head, "|" + " --- |" * (len(series) + 2)]
    for lv in levels:
        cells = []
        for k, _ in series:
            med, sp = f.tok_s(k, lv), f.spread(k, lv)
            if med is None or sp is None:
                cells.append("")
                continue
            mark = " †" if (f.others(k, lv) or 0) > NOISY else ""
            cells.append(f"{med:.1f} ({sp[0]:.0f}-{sp[1]:.0f}){mark}")
        bb = f.kernel("batched_bench", "by_sequences", str(lv), "gen_tok_s")
        lines.append(f"| {lv} | " + " | ".join(cells) + f" | {_n(bb)} |")
    return "\n".join(lines)


def length_table(f: Figures) -> str:
    servers = list(f.res["prompt_length"])
    if not servers:
        return "(not measured)"
    ns = sorted({int(n) for s in servers for n in f.res["prompt_length"][s]})
    lines = ["| prompt tokens | " + " | ".join(servers) + " |", "|" + " --- |" * (len(servers) + 1)]
    for n in ns:
        lines.append(f"| {n} | " + " | ".join(_ms(f.length(s, n)) for s in servers) + " |")
    return "\n".join(lines)


def _repeats(f: Figures) -> str:
    counts = {len(reps) for levels in f.scaling.values() for reps in levels.values()}
    return "-".join(str(c) for c in sorted({min(counts), max(counts)})) if counts else "0"


def section(res: dict[str, Any]) -> str:
    f, m = Figures(res), res["meta"]
    kb = res.get("kernels", {})
    fails = res.get("failures", {})
    noisy = [q for q in res.get("quiet", []) if not q.get("quiet")]
    parts = [
        f"Measured {' + '.join(m.get('merged', [m['date']]))} ({m['mode']} run, "
        f"{_repeats(f)} repeats, medians; chatd {m.get('chatd_commit', '?')}) on "
        f"{m['nproc']} cores of an {m['cpu']}{' (AMX)' if m.get('amx') else ''}, "
        f"SmolLM2-135M-Instruct Q4_1, {m['threads']} threads everywhere, weight repacking off "
        "everywhere. This is a **shared machine**: other work ran on the same cores "
        f"({len(noisy)} of {len(res.get('quiet', []))} starts found no quiet moment in time; "
        "`foreign_cores` in the JSON tells how much CPU others took during each run).",
        "",
        figures_table(f),
        "",
        "Total completion tokens/s by concurrent streams (median, min-max over repeats; 128 "
        "tokens per request, `ignore_eos`; † = other processes took more than half a core "
        "during these runs, read with care):",
        "",
        scaling_table(f),
        "",
        "Time to first token by prompt length (fresh prompts, median):",
        "",
        length_table(f),
        "",
        "![tokens/s by streams and TTFT by prompt length](scaling.png)",
    ]
    if lb := kb.get("llama_bench"):
        pp = (lb.get("pp128") or {}).get("tok_s")
        tg = (lb.get("tg128") or {}).get("tok_s")
        parts += [
            "",
            f"`llama-bench`: pp128 {_n(pp)} tok/s, tg128 {_n(tg)} tok/s"
            + (f" ({lb['error']})" if "error" in lb else "")
            + ".",
        ]
    if fails:
        parts += ["", "Failures: " + "; ".join(f"**{k}**: {v}" for k, v in fails.items())]
    return "\n".join(parts)


def write_readme(res: dict[str, Any], readme: Path = README) -> None:
    text = readme.read_text() if readme.exists() else f"# bench\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    readme.write_text(f"{head}{START}\n{section(res)}\n{END}{tail}")


def _minor_label(v: float, _pos: object) -> str:
    """Label the 2x and 5x minor ticks of a log axis."""
    lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
    return f"{v:g}" if lead in (2, 5) else ""


def plot(res: dict[str, Any], path: Path = PLOT) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = Figures(res)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {
        "chatd@8": "C0-o",
        "chatd@32": "C0--s",
        "llama-server@8": "C1-o",
        "llama-server@32": "C1--s",
    }
    series = [(k, n) for k, n in SERIES if k in f.scaling]
    if key := f.lcp_key():
        series.append((key, key))
    for k, name in series:
        levels = sorted(int(lv) for lv in f.scaling[k])
        ys = [f.tok_s(k, lv) for lv in levels]
        a.plot(levels, ys, styles.get(k, "C2-^"), label=name)
    bb = res.get("kernels", {}).get("batched_bench", {}).get("by_sequences", {})
    if bb:
        xs = sorted(int(k) for k in bb)
        a.plot(
            xs, [bb[str(x)]["gen_tok_s"] for x in xs], "k:", marker="x", label="llama-batched-bench"
        )
    a.set_xscale("log", base=2)
    ticks = sorted({int(lv) for k, _ in series for lv in f.scaling[k]})
    a.set_xticks(ticks, [str(t) for t in ticks])
    a.set_ylim(bottom=0)
    a.set_xlabel("concurrent streams")
    a.set_ylabel("completion tokens/s (total)")
    a.set_title("Throughput (128 tokens per request)")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    for i, server in enumerate(res["prompt_length"]):
        ns = sorted(int(n) for n in res["prompt_length"][server])
        ys = [f.length(server, n) for n in ns]
        b.plot(ns, [y * 1000 if y is not None else None for y in ys], f"C{i}-o", label=server)
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    ns_all = sorted({int(n) for srv in res["prompt_length"] for n in res["prompt_length"][srv]})
    b.set_xticks(ns_all, [str(n) for n in ns_all])
    b.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    b.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_minor_label))
    b.set_xlabel("prompt tokens")
    b.set_ylabel("time to first token (ms)")
    b.set_title("TTFT by prompt length (1 request)")
    b.grid(alpha=0.3, which="both")
    b.legend(fontsize=8)
    when = res["meta"].get("merged", [res["meta"]["date"]])[0]
    fig.suptitle(
        f"chatd vs llama.cpp, {when}, {res['meta']['nproc']} cores, shared machine",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
