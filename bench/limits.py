"""Oversized requests against a live chatd at its default limits: time to answer, memory.

python -m bench.limits [--gib 1] [--mb 50]

Each case sends one chat request whose single user message is huge, over a raw socket:
a sender thread writes the body while the main thread waits for the answer, so the time
measured is the server's (a client library would finish sending first). Reported: status
and code, seconds from the first byte sent to the whole answer, bytes sent by then, the
server's RSS before, its peak (VmHWM) during, and after (1 s later), and /health after.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

MIB = 1024 * 1024
PIECE = b"a" * MIB


@dataclass
class Case:
    name: str
    content_bytes: int
    chunked: bool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak(pid: int) -> None:
    """Linux resets VmHWM to the current RSS on writing 5 to clear_refs."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def send_case(port: int, case: Case) -> tuple[str, float, int]:
    """(answer's status line and error code, seconds to the whole answer, bytes sent)."""
    prefix = b'{"model": "smollm2", "messages": [{"role": "user", "content": "'
    suffix = b'"}]}'
    length = len(prefix) + case.content_bytes + len(suffix)
    framing = "transfer-encoding: chunked" if case.chunked else f"content-length: {length}"
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n"
        f"content-type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sent = 0
    stop = threading.Event()

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if case.chunked else data

    def send() -> None:
        nonlocal sent
        try:
            sock.sendall(head + frame(prefix))
            left = case.content_bytes
            while left and not stop.is_set():
                piece = PIECE[: min(left, MIB)]
                sock.sendall(frame(piece))
                sent += len(piece)
                left -= len(piece)
            sock.sendall(frame(suffix) + (b"0\r\n\r\n" if case.chunked else b""))
        except OSError:
            pass

    started = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    elapsed = time.perf_counter() - started
    answered_after = sent
    stop.set()
    sock.close()
    sender.join()
    code = json.loads(body)["error"]["code"] if body.startswith(b'{"error"') else ""
    return f"{lines[0].split(' ', 1)[1]} {code}", elapsed, answered_after


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__)
    ap.add_argument("--mb", type=int, default=50, help="size of the body within the limit")
    ap.add_argument("--gib", type=int, default=1, help="size of the bodies over the limit")
    args = ap.parse_args()
    port = free_port()
    data = tempfile.mkdtemp(prefix="chatd-limits-")
    cmd = [sys.executable, "-m", "chatd.cli", "serve", "--port", str(port), "--threads", "2"]
    cmd += ["--data-dir", data, "--model-name", "smollm2", "--log-level", "warning"]
    server = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("chatd did not start")
            time.sleep(0.2)
        cases = [
            Case(f"{args.mb} MB message, Content-Length", args.mb * 1000 * 1000, False),
            Case(f"{args.gib} GiB message, Content-Length", args.gib * 1024 * MIB, False),
            Case(f"{args.gib} GiB message, chunked", args.gib * 1024 * MIB, True),
        ]
        print("| case | answer | seconds | MiB sent by then | RSS before | peak | after | alive |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for case in cases:
            before = rss_kib(server.pid)
            reset_peak(server.pid)
            answer, seconds, sent = send_case(port, case)
            peak = rss_kib(server.pid, "VmHWM")
            time.sleep(1)
            after = rss_kib(server.pid)
            alive = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).is_success
            print(
                f"| {case.name} | {answer} | {seconds:.3f} | {sent / MIB:.0f} | "
                f"{before / 1024:.0f} MiB | {peak / 1024:.0f} MiB | {after / 1024:.0f} MiB | "
                f"{'yes' if alive else 'NO'} |",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
