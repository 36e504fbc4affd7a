"""The kernels' limit: llama-bench (tg/pp) and llama-batched-bench, no HTTP, no Python."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.peers import Peers
from bench.servers import THREADS


def _run(cmd: list[str], timeout: float) -> tuple[int, str, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "", f"timeout after {timeout:.0f}s"
    return p.returncode, p.stdout, p.stderr


def _failure(rc: int, err: str) -> str:
    how = f"signal {-rc}" if rc < -1 else ("timeout" if rc == -1 else f"exit {rc}")
    return f"{how}: " + " | ".join(err.strip().splitlines()[-3:])


def llama_bench(peers: Peers, model: Path, repeats: int = 3) -> dict[str, Any]:
    """tg128 and pp128 in tokens/s (mean and stddev over `repeats`), repacking off."""
    cmd = [str(peers.tool("llama-bench")), "-m", str(model), "-t", str(THREADS)]
    cmd += ["-p", "128", "-n", "128", "-r", str(repeats), "--repack", "0", "-o", "json"]
    rc, out, err = _run(cmd, 600)
    if rc != 0:
        return {"error": _failure(rc, err), "cmd": cmd}
    res: dict[str, Any] = {"cmd": cmd}
    for row in json.loads(out):
        key = f"tg{row['n_gen']}" if row["n_gen"] else f"pp{row['n_prompt']}"
        res[key] = {"tok_s": row["avg_ts"], "stddev": row["stddev_ts"]}
    return res


def batched_bench(
    peers: Peers, model: Path, prompt_tokens: int, gen: int, sequences: list[int]
) -> dict[str, Any]:
    """Decode `sequences` streams of `prompt_tokens` + `gen` tokens; generated tokens/s."""
    cmd = [str(peers.tool("llama-batched-bench")), "-m", str(model), "-t", str(THREADS)]
    cmd += ["-tb", str(THREADS), "-c", "16384", "-b", "2048", "-ub", "512", "--no-repack"]
    cmd += ["-kvu", "-npp", str(prompt_tokens), "-ntg", str(gen)]
    cmd += ["-npl", ",".join(map(str, sequences)), "--output-format", "jsonl"]
    rc, out, err = _run(cmd, 900)
    if rc != 0:
        return {"error": _failure(rc, err), "cmd": cmd}
    rows: dict[str, Any] = {}
    for line in (out + "\n" + err).splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        rows[str(r["pl"])] = {
            "gen_tok_s": r["pl"] * r["tg"] / r["t"],  # like a client counts: over the whole run
            "speed_tg": r["speed_tg"],  # decode steps only
            "speed_pp": r["speed_pp"],
            "t": r["t"],
        }
    return {"cmd": cmd, "prompt_tokens": prompt_tokens, "gen": gen, "by_sequences": rows}
