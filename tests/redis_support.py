"""The test Redis: CHATD_TEST_REDIS_URL (`make test` sets it with scripts/redis.sh).

Outside CI, a missing URL starts the throwaway instance with that script; in CI it fails.
Tests keep apart by using fresh keys: each key's buckets are its own Redis keys.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def redis_url() -> str:
    url = os.environ.get("CHATD_TEST_REDIS_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("CHATD_TEST_REDIS_URL is not set: run the tests with `make test`")
    script = ROOT / "scripts" / "redis.sh"
    url = subprocess.run(
        ["bash", str(script), "start"], check=True, capture_output=True, text=True
    ).stdout.strip()
    os.environ["CHATD_TEST_REDIS_URL"] = url
    return url
