"""`[[keys]]` on `chatd serve` with the default model: start-up errors, `chatd key new`,
limits in memory, and limits shared by two instances through the test Redis."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ROOT, Server, free_port
from tests.redis_support import redis_url
from tests.schema import validate

SERVE = ("--model-name", "smollm2", "--model-name", "gpt-4o-mini", "--parallel", "2")
HI = [{"role": "user", "content": "Say hi."}]
# ~280 tokens, nearly all prompt: answers are slow on a busy machine, and a limit gives
# tokens back meanwhile (tpm/60 a second); big prompts keep that small beside the usage
LONG = [{"role": "user", "content": " ".join(["apple"] * 250)}]
TPM = 400


def came_back(started: float) -> int:
    """The most tokens a TPM limit can have given back since `started`."""
    return math.ceil(TPM / 60 * (time.monotonic() - started)) + 1


def chatd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatd.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def fresh_key() -> str:
    return "sk-test-" + uuid.uuid4().hex


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


BAD_ENTRIES = [
    ('[[keys]]\nname = "a"\n', "chatd: [[keys]] 'a': give exactly one of key_sha256 or key_env"),
    (
        '[[keys]]\nname = "a"\nkey_sha256 = "abc"\n',
        "chatd: [[keys]] 'a': key_sha256 must be 64 hex digits",
    ),
    (
        f'[[keys]]\nname = "a"\nkey_sha256 = "{"0" * 64}"\nrmp = 3\n',
        "chatd: [[keys]] 'a': unknown field 'rmp'",
    ),
    (
        '[[keys]]\nname = "a"\nkey_env = "CHATD_TEST_UNSET_KEY"\n',
        "chatd: [[keys]] 'a': the environment variable CHATD_TEST_UNSET_KEY is not set",
    ),
    (
        f'[[keys]]\nname = "a"\nkey_sha256 = "{"0" * 64}"\ntpm = 0\n',
        "chatd: [[keys]] 'a': tpm must be a positive integer",
    ),
    ('keys = "sk-1"\n', "chatd: keys must be an array of tables: write each key as [[keys]]"),
]


@pytest.mark.parametrize(("toml", "line"), BAD_ENTRIES)
def test_a_bad_entry_stops_the_start_with_one_line(tmp_path: Path, toml: str, line: str) -> None:
    config = tmp_path / "chatd.toml"
    config.write_text(toml)
    done = chatd("serve", "--config", str(config), "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.strip() == line


def test_an_unreachable_redis_stops_the_start_with_one_line() -> None:
    done = chatd("serve", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("chatd: cannot use --redis-url:"), lines
    assert "refused" in lines[0]


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {"bob": fresh_key(), "carol": fresh_key()}


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """`chatd key new`: the key (stderr) and its [[keys]] entry (stdout)."""
    done = chatd("key", "new", "--name", "alice")
    assert done.returncode == 0, done.stderr
    key = done.stderr.strip().rsplit(" ", 1)[-1]
    assert key.startswith("sk-chatd-") and len(key) > 40
    assert key not in done.stdout  # only its digest goes into the config
    assert f'key_sha256 = "{sha(key)}"' in done.stdout
    return key, done.stdout


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, alice: tuple[str, str], keys: dict[str, str]
) -> Iterator[Server]:
    """One instance, limits in memory: alice (pasted from `chatd key new`, rpm 3), bob
    (key_env, tpm 400), carol (may use only the alias gpt-4o-mini)."""
    data = tmp_path_factory.mktemp("keys-live")
    config = data / "chatd.toml"
    config.write_text(
        alice[1]
        + "rpm = 3\n\n"
        + '[[keys]]\nname = "bob"\nkey_env = "BOB_KEY"\ntpm = 400\n\n'
        + f'[[keys]]\nname = "carol"\nkey_sha256 = "{sha(keys["carol"])}"\n'
        + 'models = ["gpt-4o-mini"]\n'
    )
    env = {"BOB_KEY": keys["bob"], "CHATD_REDIS_URL": ""}
    srv = Server(data, "--config", str(config), *SERVE, "--ctx", "1024", env=env).start()
    yield srv
    srv.stop()


def create(client: openai.OpenAI, model: str = "smollm2", messages: Any = HI) -> Any:
    """A one-token answer, with its headers (`.headers`) and its body (`.parse()`)."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, max_tokens=1
    )
    validate("CreateChatCompletionResponse", raw.http_response.json())
    return raw


def refused(client: openai.OpenAI, kind: str) -> httpx.Response:
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="smollm2", messages=HI, max_tokens=1)
    return check_refusal(raised.value.response, kind)


def check_refusal(response: httpx.Response, kind: str) -> httpx.Response:
    assert response.status_code == 429
    validate("ErrorResponse", response.json())
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (kind, "rate_limit_exceeded", None)
    assert int(response.headers["retry-after"]) >= 1
    return response


def outcomes(clients: list[openai.OpenAI], n: int) -> list[tuple[int, bool, Any]]:
    """n requests at once, spread over the clients: (client index, admitted, response)."""

    def one(i: int) -> tuple[int, bool, Any]:
        try:
            return i % len(clients), True, create(clients[i % len(clients)])
        except openai.RateLimitError as exc:
            return i % len(clients), False, exc.response

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_key_new_pasted_into_config_and_rpm_in_memory(live: Server, alice: tuple[str, str]) -> None:
    with pytest.raises(openai.AuthenticationError):
        live.client(alice[0] + "x").models.list()
    client = live.client(alice[0])
    # admission happens on arrival, before the model: at once, so no request comes back
    # (one each 20 s) however slow the answers are
    results = outcomes([client], 4)
    admitted = [r for _, ok, r in results if ok]
    assert len(admitted) == 3
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted)
    assert remaining == [0, 1, 2]
    (refusal,) = [r for _, ok, r in results if not ok]
    check_refusal(refusal, "requests")
    assert 15 <= int(refusal.headers["retry-after"]) <= 20
    assert refusal.headers["x-ratelimit-limit-requests"] == "3"
    assert refusal.headers["x-ratelimit-remaining-requests"] == "0"


def test_tpm_in_memory(live: Server, keys: dict[str, str]) -> None:
    client = live.client(keys["bob"])
    started = time.monotonic()
    used = 0
    for _ in range(8):
        try:
            raw = create(client, messages=LONG)
        except openai.RateLimitError:
            break
        slack = came_back(started)
        remaining = int(raw.headers["x-ratelimit-remaining-tokens"])
        assert max(0, TPM - used) <= remaining <= max(0, TPM - used) + slack
        assert raw.headers["x-ratelimit-limit-tokens"] == str(TPM)
        used += raw.parse().usage.total_tokens
    else:
        pytest.fail(f"tpm = {TPM} never refused a request")
    assert used >= TPM - came_back(started)  # refused only once the minute's tokens were spent
    refused(client, "tokens")

    metrics = httpx.get(live.url + "/metrics").text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('chatd_key_tokens_total{key="bob"')
    )
    assert counted == used
    assert keys["bob"] not in metrics


def test_allow_list_by_the_id_the_client_wrote(live: Server, keys: dict[str, str]) -> None:
    client = live.client(keys["carol"])
    create(client, model="gpt-4o-mini")  # the alias is allowed
    errors = {}
    for model in ("smollm2", "nope"):  # the same model by its id; a model that does not exist
        with pytest.raises(openai.NotFoundError) as raised:
            client.chat.completions.create(model=model, messages=HI, max_tokens=1)
        errors[model] = raised.value.response.json()
        validate("ErrorResponse", errors[model])
    assert errors["smollm2"]["error"]["code"] == "model_not_found"
    nope = errors["nope"]["error"]
    assert errors["smollm2"]["error"] == {
        **nope,
        "message": nope["message"].replace("nope", "smollm2"),
    }
    assert [m.id for m in client.models.list().data] == ["gpt-4o-mini"]
    auth = {"authorization": f"Bearer {keys['carol']}"}
    hidden = httpx.get(live.url + "/v1/models/smollm2", headers=auth)
    missing = httpx.get(live.url + "/v1/models/nope", headers=auth)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text == missing.text.replace("nope", "smollm2")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, dict]]:
    """Two instances sharing the test Redis: dave (rpm 4), erin (tpm 400)."""
    keys = {"dave": fresh_key(), "erin": fresh_key()}
    data = tmp_path_factory.mktemp("keys-redis")
    config = data / "chatd.toml"
    config.write_text(
        f'[[keys]]\nname = "dave"\nkey_sha256 = "{sha(keys["dave"])}"\nrpm = 4\n\n'
        f'[[keys]]\nname = "erin"\nkey_sha256 = "{sha(keys["erin"])}"\ntpm = 400\n'
    )
    args = ("--config", str(config), "--redis-url", redis_url(), *SERVE, "--ctx", "1024")
    first = Server(data / "a", *args).start()
    try:
        second = Server(data / "b", *args).start()
    except Exception:
        first.stop()
        raise
    yield first, second, keys
    first.stop()
    second.stop()


def test_rpm_holds_across_two_instances(pair: tuple[Server, Server, dict]) -> None:
    first, second, keys = pair
    clients = [first.client(keys["dave"]), second.client(keys["dave"])]
    results = outcomes(clients, 10)  # at once: no request comes back (one each 15 s)
    admitted = [(i, r) for i, ok, r in results if ok]
    assert len(admitted) == 4  # 4 in all, not 4 on each instance
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for _, r in admitted)
    assert remaining == [0, 1, 2, 3]
    for _, ok, response in results:
        if not ok:
            check_refusal(response, "requests")


def test_tpm_holds_across_two_instances(pair: tuple[Server, Server, dict]) -> None:
    first, second, keys = pair
    clients = [first.client(keys["erin"]), second.client(keys["erin"])]
    started = time.monotonic()
    used: list[int] = []
    for i in range(8):
        try:
            raw = create(clients[i % 2], messages=LONG)
        except openai.RateLimitError as exc:
            validate("ErrorResponse", exc.response.json())
            assert exc.response.json()["error"]["type"] == "tokens"
            break
        slack = came_back(started)
        remaining = int(raw.headers["x-ratelimit-remaining-tokens"])
        # what the other instance counted shows here
        assert max(0, TPM - sum(used)) <= remaining <= max(0, TPM - sum(used)) + slack
        used.append(raw.parse().usage.total_tokens)
    else:
        pytest.fail(f"tpm = {TPM} never refused a request")
    slack = came_back(started)
    # the total admitted is the shared limit, at most one answer past it: never TPM each
    assert TPM - slack <= sum(used) < TPM + max(used) + slack
    assert len(used) >= 2
