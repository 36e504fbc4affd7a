"""`chatd serve`: the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from chatd.config import Settings, default_data_dir, env_list, load_config


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CHATD_{name}", default)


def _env_int(name: str, default: int | None) -> int | None:
    value = _env(name)
    return int(value) if value else default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the OpenAI Chat Completions API")
    serve.add_argument(
        "--config",
        type=Path,
        default=_env("CONFIG"),
        help="a chatd.toml: upstreams, routes, keys (env CHATD_CONFIG); flags win over it",
    )
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=_env_int("PORT", 8000))
    serve.add_argument("--model", default=_env("MODEL"), help="path to a GGUF file")
    serve.add_argument(
        "--model-name",
        action="append",
        dest="model_names",
        default=None,
        help="id clients use for the model; repeat to add aliases (env CHATD_MODEL_NAMES)",
    )
    serve.add_argument("--ctx", type=int, default=_env_int("CTX", 8192), help="context tokens")
    serve.add_argument("--threads", type=int, default=_env_int("THREADS", None))
    serve.add_argument(
        "--parallel",
        type=int,
        default=_env_int("PARALLEL", 8),
        help="sequences decoded at once",
    )
    serve.add_argument("--queue-size", type=int, default=_env_int("QUEUE_SIZE", 256))
    serve.add_argument(
        "--no-prefix-cache",
        dest="prefix_cache",
        action="store_false",
        default=_env("PREFIX_CACHE", "1") not in ("0", "false", "no"),
        help="drop every finished sequence's KV (env CHATD_PREFIX_CACHE=0)",
    )
    serve.add_argument(
        "--flash-attn",
        action=argparse.BooleanOptionalAction,
        default=_env("FLASH_ATTN", "1") not in ("0", "false", "no"),
        help="flash attention: skips other sequences' KV cells; off makes a prompt's logits "
        "independent of how it was split into batches (env CHATD_FLASH_ATTN=0)",
    )
    serve.add_argument(
        "--kv-type",
        choices=("f16", "bf16", "q8_0"),
        default=_env("KV_TYPE", "f16"),
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
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
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
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not 1 <= args.parallel <= 128:
        raise SystemExit("chatd: --parallel must be between 1 and 128")
    if args.kv_type == "q8_0" and not args.flash_attn:
        raise SystemExit("chatd: a quantized --kv-type needs flash attention (llama.cpp)")
    return Settings(
        config=load_config(args.config) if args.config else {},
        host=args.host,
        port=args.port,
        model=args.model,
        model_names=args.model_names or env_list("CHATD_MODEL_NAMES"),
        ctx=args.ctx,
        threads=args.threads,
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
    )


def serve(settings: Settings) -> None:
    import uvicorn

    from chatd.api.app import create_app
    from chatd.backends import build_backends

    if settings.redis_url:
        from chatd.ratelimits import check_redis

        check_redis(settings.redis_url)
    app = create_app(settings, build_backends)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        serve(settings_from_args(args))
    elif args.command == "key":
        from chatd.keys import print_new_key

        print_new_key(args.name)
    else:  # pragma: no cover - argparse rejects unknown commands
        sys.exit(2)


if __name__ == "__main__":
    main()
