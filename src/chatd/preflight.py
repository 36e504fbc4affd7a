"""Checks before start-up that turn a person's first mistakes into one line saying what to do."""

from __future__ import annotations

from pathlib import Path

GGUF_MAGIC = b"GGUF"
GIB = 1024**3


class StartupError(Exception):
    """The server cannot start; the message is the one line shown, and says what to do."""


def check_model_file(path: Path) -> None:
    """A readable GGUF file (its first four bytes are `GGUF`) at `path`."""
    if not path.exists():
        raise StartupError(f"--model {path}: no such file; give the path of a .gguf model file")
    if not path.is_file():
        raise StartupError(f"--model {path}: not a file; give the path of a .gguf model file")
    try:
        with open(path, "rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise StartupError(f"--model {path}: cannot be read ({exc.strerror})") from None
    if magic != GGUF_MAGIC:
        raise StartupError(
            f"--model {path}: not a GGUF file; llama.cpp needs a .gguf model "
            "(convert other formats with llama.cpp's convert_hf_to_gguf.py)"
        )


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes of memory the kernel says are available (MemAvailable), None where unknown."""
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def check_fits_memory(path: Path, available: int | None) -> None:
    """The model's weights, about its file size, fit in `available` bytes of memory."""
    size = path.stat().st_size
    if available is not None and size > available:
        raise StartupError(
            f"--model {path.name} needs about {size / GIB:.1f} GiB of memory but only "
            f"{available / GIB:.1f} GiB is available: free memory, pick a smaller (more "
            "quantized) GGUF, or offload layers to a GPU with --gpu-layers"
        )
