"""`chatd serve` and `chatd chat`: the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from chatd import client as chat_client
from chatd.config import DEFAULTS, Settings, default_data_dir, env_list, load_config
from chatd.gateway_config import ConfigError, parse_gateway
from chatd.logs import FORMATS

# the [serve] table of --config: each key is a flag's name (flags, then CHATD_* env, win)
SERVE_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "port": int,
    "model": str,
    "model_names": list,
    "ctx": int,
    "threads": int,
    "parallel": int,
    "queue_size": int,
    "prefix_cache": bool,
    "flash_attn": bool,
    "kv_type": str,
    "data_dir": str,
    "database_url": str,
    "log_level": str,
    "redis_url": str,
    "local_model": bool,
    "max_body_mb": int,
    "max_header_kb": int,
    "read_timeout_s": (int, float),
    "drain_s": (int, float),
    "gpu_layers": int,
    "log_format": str,
}


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CHATD_{name}", default)


def _env_int(name: str, default: int | None) -> int | None:
    value = _env(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = _env(name)
    return float(value) if value else default


def _env_flag(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.lower() not in ("0", "false", "no")


def file_defaults(config: dict[str, object]) -> dict[str, object]:
    """The [serve] table's values for the options no CHATD_* variable sets."""
    table = config.get("serve", {})
    if not isinstance(table, dict):
        raise SystemExit("chatd: --config: serve must be a table ([serve])")
    defaults = {}
    for key, value in table.items():
        expected = SERVE_KEYS.get(key)
        if expected is None:
            raise SystemExit(f"chatd: --config: [serve] has an unknown key {key!r}")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            kind = expected.__name__ if isinstance(expected, type) else "number"
            raise SystemExit(f"chatd: --config: [serve] {key} must be a {kind}")
        if f"CHATD_{key.upper()}" not in os.environ:
            defaults[key] = value
    return defaults


def build_parser(defaults: dict[str, object] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    chat_client.add_parser(commands)
    serve = commands.add_parser("serve", help="serve the OpenAI Chat Completions API")
    serve.add_argument(
        "--config",
        type=Path,
        default=_env("CONFIG"),
        help="a chatd.toml: upstreams, routes, keys (env CHATD_CONFIG); flags win over it",
    )
    serve.add_argument("--host", default=_env("HOST", DEFAULTS.host))
    serve.add_argument("--port", type=int, default=_env_int("PORT", DEFAULTS.port))
    serve.add_argument("--model", default=_env("MODEL"), help="path to a GGUF file")
    serve.add_argument(
        "--model-name",
        action="append",
        dest="model_names",
        default=None,
        help="id clients use for the model; repeat to add aliases (env CHATD_MODEL_NAMES)",
    )
    serve.add_argument(
        "--ctx", type=int, default=_env_int("CTX", DEFAULTS.ctx), help="context tokens"
    )
    serve.add_argument("--threads", type=int, default=_env_int("THREADS", DEFAULTS.threads))
    serve.add_argument(
        "--gpu-layers",
        type=int,
        default=_env_int("GPU_LAYERS", DEFAULTS.gpu_layers),
        help="model layers offloaded to the GPU; default: all when llama.cpp was built with a "
        "GPU backend (CUDA, Metal, ...), none otherwise (env CHATD_GPU_LAYERS)",
    )
    serve.add_argument(
        "--parallel",
        type=int,
        default=_env_int("PARALLEL", DEFAULTS.parallel),
        help="sequences decoded at once",
    )
    serve.add_argument(
        "--queue-size", type=int, default=_env_int("QUEUE_SIZE", DEFAULTS.queue_size)
    )
    serve.add_argument(
        "--no-prefix-cache",
        dest="prefix_cache",
        action="store_false",
        default=_env_flag("PREFIX_CACHE", DEFAULTS.prefix_cache),
        help="drop every finished sequence's KV (env CHATD_PREFIX_CACHE=0)",
    )
    serve.add_argument(
        "--flash-attn",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("FLASH_ATTN", DEFAULTS.flash_attn),
        help="flash attention: skips other sequences' KV cells; off makes a prompt's logits "
        "independent of how it was split into batches (env CHATD_FLASH_ATTN=0)",
    )
    serve.add_argument(
        "--kv-type",
        choices=("f16", "bf16", "q8_0"),
        default=_env("KV_TYPE", DEFAULTS.kv_type),
        help="KV cache element type: bf16 makes greedy output repeatable across the prefix "
        "cache and predictions, q8_0 halves its memory (env CHATD_KV_TYPE)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        default=None,
        help="accepted API key; repeat for several principals (env CHATD_API_KEYS)",
    )
    serve.add_argument("--data-dir", type=Path, default=_env("DATA_DIR"))
    serve.add_argument("--database-url", default=_env("DATABASE_URL"))
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", DEFAULTS.log_level))
    serve.add_argument(
        "--log-format",
        choices=FORMATS,
        default=_env("LOG_FORMAT", DEFAULTS.log_format),
        help="text for people, json for log shippers: one object per line (env CHATD_LOG_FORMAT)",
    )
    serve.add_argument(
        "--max-body-mb",
        type=int,
        default=_env_int("MAX_BODY_MB", DEFAULTS.max_body_mb),
        help="largest request body in MiB; larger ones get 413 (env CHATD_MAX_BODY_MB)",
    )
    serve.add_argument(
        "--max-header-kb",
        type=int,
        default=_env_int("MAX_HEADER_KB", DEFAULTS.max_header_kb),
        help="largest request line plus headers in KiB; larger get 431 (env CHATD_MAX_HEADER_KB)",
    )
    serve.add_argument(
        "--read-timeout-s",
        type=float,
        default=_env_float("READ_TIMEOUT_S", DEFAULTS.read_timeout_s),
        help="seconds a request's headers, then its body, may take to arrive; slower ones get "
        "408 (env CHATD_READ_TIMEOUT_S)",
    )
    serve.add_argument(
        "--drain-s",
        type=float,
        default=_env_float("DRAIN_S", DEFAULTS.drain_s),
        help="on SIGTERM, seconds running generations may take to finish before they are "
        "ended with an error (env CHATD_DRAIN_S)",
    )
    serve.add_argument(
        "--local-model",
        action=argparse.BooleanOptionalAction,
        default=_env("LOCAL_MODEL", "1") not in ("0", "false", "no"),
        help="--no-local-model: a pure gateway for the config's upstreams, without llama.cpp "
        "(env CHATD_LOCAL_MODEL=0)",
    )
    serve.add_argument(
        "--redis-url",
        default=_env("REDIS_URL"),
        help="keep rate limits in this Redis, shared by every instance using it "
        "(env CHATD_REDIS_URL); default: in this process",
    )
    key = commands.add_parser("key", help="manage API keys").add_subparsers(
        dest="key_command", required=True
    )
    key_new = key.add_parser("new", help="print a fresh key (stderr) and its [[keys]] entry")
    key_new.add_argument("--name", help="the key's name in metrics and errors")
    if defaults:
        serve.set_defaults(**{k: v for k, v in defaults.items() if k != "model_names"})
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not 1 <= args.parallel <= 128:
        raise SystemExit("chatd: --parallel must be between 1 and 128")
    if args.max_body_mb < 1 or args.max_header_kb < 1:
        raise SystemExit("chatd: --max-body-mb and --max-header-kb must be at least 1")
    if args.read_timeout_s <= 0 or args.drain_s < 0:
        raise SystemExit("chatd: --read-timeout-s must be positive, --drain-s not negative")
    if args.gpu_layers is not None and args.gpu_layers < 0:
        raise SystemExit("chatd: --gpu-layers must be 0 or more")
    if args.log_format not in FORMATS:
        raise SystemExit(f"chatd: --log-format must be one of {', '.join(FORMATS)}")
    if args.kv_type == "q8_0" and not args.flash_attn:
        raise SystemExit("chatd: a quantized --kv-type needs flash attention (llama.cpp)")
    config = load_config(args.config) if args.config else {}
    try:
        gateway = parse_gateway(config)
    except ConfigError as exc:
        raise SystemExit(f"chatd: --config {args.config}: {exc}") from None
    if not args.local_model and not gateway.upstreams:
        raise SystemExit("chatd: --no-local-model needs [[upstreams]] in --config")
    file_names = config.get("serve", {}).get("model_names", [])
    return Settings(
        config=config,
        local_model=args.local_model,
        host=args.host,
        port=args.port,
        model=args.model,
        model_names=args.model_names or env_list("CHATD_MODEL_NAMES") or list(file_names),
        ctx=args.ctx,
        threads=args.threads,
        gpu_layers=args.gpu_layers,
        parallel=args.parallel,
        queue_size=args.queue_size,
        prefix_cache=args.prefix_cache,
        flash_attn=args.flash_attn,
        kv_type=args.kv_type,
        api_keys=args.api_keys or env_list("CHATD_API_KEYS"),
        data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(),
        database_url=args.database_url,
        redis_url=args.redis_url,
        log_level=args.log_level,
        log_format=args.log_format,
        max_body_mb=args.max_body_mb,
        max_header_kb=args.max_header_kb,
        read_timeout_s=args.read_timeout_s,
        drain_s=args.drain_s,
    )


def serve(settings: Settings) -> None:
    from chatd.api.app import create_app
    from chatd.api.server import serve
    from chatd.backends import build_backends

    if settings.redis_url:
        from chatd.ratelimits import check_redis

        check_redis(settings.redis_url)
    serve(create_app(settings, build_backends), settings)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve" and args.config:
        args = build_parser(file_defaults(load_config(args.config))).parse_args(argv)
    if args.command == "serve":
        serve(settings_from_args(args))
    elif args.command == "chat":
        sys.exit(chat_client.main(args))
    elif args.command == "key":
        from chatd.keys import print_new_key

        print_new_key(args.name)
    else:  # pragma: no cover - argparse rejects unknown commands
        sys.exit(2)


if __name__ == "__main__":
    main()
