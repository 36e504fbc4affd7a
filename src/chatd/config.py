"""Settings from flags, environment variables (CHATD_*) and defaults."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("chatd"))


@dataclass(slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None  # path to a GGUF; None = the default SmolLM2 package
    model_names: list[str] = field(default_factory=list)  # first is the id, the rest aliases
    ctx: int = 8192
    threads: int | None = None  # None = every core
    gpu_layers: int | None = None  # None = all when llama.cpp has a GPU backend, else 0
    parallel: int = 8
    queue_size: int = 256
    prefix_cache: bool = True
    flash_attn: bool = True
    kv_type: str = "f16"  # or "bf16", "q8_0"
    api_keys: list[str] = field(default_factory=list)
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # None = SQLite in data_dir
    redis_url: str | None = None  # None = rate limits kept in this process
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line
    max_body_mb: int = 64  # request bodies above this get 413 while being read
    max_header_kb: int = 64  # request line and headers above this get 431
    read_timeout_s: float = 30.0  # the head, then the body, must arrive within this
    drain_s: float = 30.0  # on SIGTERM, how long running generations may take to finish
    local_model: bool = True  # False: a pure gateway that never imports llama.cpp
    config: dict[str, Any] = field(default_factory=dict)  # the --config file's tables, as read

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'chatd.db'}"


DEFAULTS = Settings()


def env_list(name: str) -> list[str]:
    raw = os.environ.get(name, "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def load_config(path: Path) -> dict[str, Any]:
    """The TOML file's tables; a file that cannot be read ends the program with one line."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise SystemExit(f"chatd: cannot read --config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"chatd: --config {path} is not valid TOML: {exc}") from None
