"""Logging for `chatd serve`: readable text, or one JSON object per line for log shippers."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

FORMATS = ("text", "json")


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class AccessFormatter(logging.Formatter):
    """`<time> POST /v1/chat/completions 200 model=... request_id=...`; absent values as `-`."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] | None = getattr(record, "access", None)
        if fields is None:
            return f"{_timestamp(record)} {record.getMessage()}"
        head = f"{fields['method']} {fields['path']} {fields['status']}"
        rest = " ".join(
            f"{key}={'-' if value is None else value}"
            for key, value in fields.items()
            if key not in ("method", "path", "status")
        )
        return f"{_timestamp(record)} {head} {rest}"


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for extra in ("access", "ready"):
            fields = getattr(record, extra, None)
            if fields is not None:
                out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's loggers and chatd's, in `log_format`."""
    json = log_format == "json"
    plain = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"}
    formatters = {
        "default": {"()": JSONFormatter} if json else plain,
        "access": {"()": JSONFormatter} if json else {"()": AccessFormatter},
        "banner": {"()": JSONFormatter} if json else {"format": "%(message)s"},
    }
    handlers = {
        name: {"class": "logging.StreamHandler", "formatter": name, "stream": stream}
        for name, stream in (
            ("default", "ext://sys.stderr"),
            ("access", "ext://sys.stdout"),
            ("banner", "ext://sys.stdout"),
        )
    }
    level = level.upper()
    loggers = {
        "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
        "uvicorn.error": {"level": level},
        "uvicorn.access": {"handlers": [], "propagate": False},
        "chatd": {"handlers": ["default"], "level": level, "propagate": False},
        "chatd.access": {"handlers": ["access"], "level": level, "propagate": False},
        # the banner shows whatever the level: it is how a person knows the server is up
        "chatd.ready": {"handlers": ["banner"], "level": "INFO", "propagate": False},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": handlers,
        "loggers": loggers,
    }
