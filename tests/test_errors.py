"""Errors over HTTP: OpenAI error objects with the right status, and the SDK's exceptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MODEL, Server
from tests.schema import validate

MESSAGES = [{"role": "user", "content": "Hi"}]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def post(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", json=body)


def test_unknown_model(http: httpx.Client, client: openai.OpenAI) -> None:
    error = error_of(post(http, model="foo", messages=MESSAGES), 404)
    assert error["code"] == "model_not_found"
    assert error["message"] == "The model `foo` does not exist or you do not have access to it."
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="foo", messages=MESSAGES)


def test_malformed_json(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    error = error_of(response, 400)
    assert error["type"] == "invalid_request_error"
    assert "parse the JSON body" in error["message"]


def test_unknown_argument(http: httpx.Client) -> None:
    error = error_of(post(http, model=MODEL, messages=MESSAGES, foo=1), 400)
    assert error["message"] == "Unrecognized request argument supplied: foo"
    assert error["param"] is None


def test_out_of_range_names_param(http: httpx.Client, client: openai.OpenAI) -> None:
    error = error_of(post(http, model=MODEL, messages=MESSAGES, temperature=3), 400)
    assert error["param"] == "temperature"
    assert error["code"] == "decimal_above_max_value"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, top_logprobs=3)
    assert info.value.param == "top_logprobs"


def test_bad_message_part(http: httpx.Client) -> None:
    messages = [{"role": "user", "content": [{"type": "foo", "text": "x"}]}]
    error = error_of(post(http, model=MODEL, messages=messages), 400)
    assert error["param"] == "messages[0].content[0].type"


def test_image_input_is_refused(http: httpx.Client) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}},
            ],
        }
    ]
    error = error_of(post(http, model=MODEL, messages=messages), 400)
    assert "image_url" in error["message"]
    assert error["param"] == "messages.[0].content.[1].type"  # as the real API writes it


def test_stream_options_without_stream(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream_options": {"include_usage": True}}
    error = error_of(post(http, **body), 400)
    assert error["param"] == "stream_options"


def test_both_max_tokens(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 2, "max_completion_tokens": 2}
    error = error_of(post(http, **body), 400)
    assert error["code"] == "invalid_parameter_combination"


def test_context_length_exceeded(http: httpx.Client, client: openai.OpenAI) -> None:
    error = error_of(post(http, model=MODEL, messages=MESSAGES, max_tokens=10**9), 400)
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"
    huge = [{"role": "user", "content": "word " * 9000}]
    error = error_of(post(http, model=MODEL, messages=huge), 400)
    assert error["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=huge, stream=True)


def test_not_found_route(http: httpx.Client) -> None:
    error_of(http.get("/v1/nothing"), 404)


def test_engine_survives_bad_requests(http: httpx.Client, client: openai.OpenAI) -> None:
    for body in ([], "x", {"model": MODEL, "messages": [{"role": "user"}]}, {"model": 1}):
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, response.text
        error_of(response, 400)
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert completion.choices[0].message.content is not None


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = Server(
        Path(tmp_path_factory.mktemp("keyed")), "--api-key", "sk-alice", "--parallel", "2"
    )
    server.env = {"CHATD_API_KEYS": "sk-bob"}
    server.start()
    yield server
    server.stop()


def test_api_keys(keyed: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        keyed.client("sk-wrong").models.list()
    assert info.value.code == "invalid_api_key"
    assert keyed.client("sk-alice").models.list().data
    response = httpx.get(keyed.url + "/v1/models", headers={"x-api-key": "sk-alice"})
    assert response.status_code == 200
    response = httpx.get(keyed.url + "/v1/models")
    error_of(response, 401)
    assert httpx.get(keyed.url + "/health").status_code == 200


def test_env_api_keys_only_when_no_flag(keyed: Server) -> None:
    # --api-key takes precedence over CHATD_API_KEYS: bob's env key is not accepted.
    response = httpx.get(keyed.url + "/v1/models", headers={"authorization": "Bearer sk-bob"})
    error_of(response, 401)
