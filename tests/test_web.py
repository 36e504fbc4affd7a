"""The chat page at `/` in a real browser: Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import ROOT, Server
from tests.schema import validate

ARTIFACTS = ROOT / "test-artifacts" / "web"
TIMEOUT_MS = 240_000  # generous: a shared, loaded machine can be slow


def chromium_path() -> str:
    """Debian's chromium: CHATD_TEST_CHROMIUM (`make test`), or scripts/chromium.sh."""
    path = os.environ.get("CHATD_TEST_CHROMIUM")
    if path:
        return path
    script = subprocess.run(
        ["bash", str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True
    )
    if script.returncode == 0:
        return script.stdout.strip()
    if os.environ.get("CI"):
        pytest.fail(f"Chromium could not be installed: {script.stderr.strip()}")
    pytest.skip(f"Chromium could not be installed: {script.stderr.strip()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (empty localStorage); its screenshot is kept as an artifact.

    The page must load nothing from another host (no CDN: the machine may be offline)
    and raise no JavaScript error.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_FETCHES)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    urls: list[str] = []
    tab.on("request", lambda r: urls.append(r.url))
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    foreign = [url for url in urls if not url.startswith(("http://127.0.0.1:", "data:"))]
    assert not foreign, f"the page loaded from elsewhere: {foreign}"


def open_page(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")


@dataclass
class Exchange:
    """What the page sent and what the server streamed back."""

    request: dict[str, Any]
    chunks: list[dict[str, Any]]

    def content(self, index: int = 0) -> str:
        return "".join(
            choice["delta"].get("content") or ""
            for chunk in self.chunks
            for choice in chunk["choices"]
            if choice["index"] == index
        )


def parse_stream(body: str) -> list[dict[str, Any]]:
    events = [line.removeprefix("data: ") for line in body.split("\n") if line.startswith("data:")]
    assert events[-1] == "[DONE]", "the stream did not end with [DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    return chunks


# Tee every POST the page makes: the request body and the whole streamed response text
# (DevTools keeps no body for a response the page read as a stream).
RECORD_FETCHES = """
window.exchanges = [];
const pageFetch = window.fetch;
window.fetch = async (input, init) => {
    const response = await pageFetch(input, init);
    if (init?.method === "POST") {
        const entry = {request: JSON.parse(init.body), status: response.status, body: null};
        window.exchanges.push(entry);
        response.clone().text().then((text) => (entry.body = text), () => (entry.body = ""));
    }
    return response;
};
"""


def send(page: Page, text: str) -> Exchange:
    """Type `text`, press Enter, wait for the answer; the request and the stream, validated."""
    sent = page.evaluate("window.exchanges.length")
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    page.wait_for_function(f"window.exchanges[{sent}]?.body !== null && window.exchanges[{sent}]")
    page.wait_for_selector(".answer.done")
    entry = page.evaluate(f"window.exchanges[{sent}]")
    assert entry["status"] == 200, entry["body"]
    return Exchange(entry["request"], parse_stream(entry["body"]))


def fact(page: Page, name: str) -> str:
    return page.locator(f'.answer .fact[data-fact="{name}"] b').inner_text()


def metric(server: Server, name: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


def test_page_and_assets_need_no_key(tmp_path: Path) -> None:
    srv = Server(tmp_path, "--api-key", "sk-web-test").start()
    try:
        with httpx.Client(base_url=srv.url) as http:
            page = http.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
            assert "/static/js/app.js" in assets
            for asset in [*assets, "/static/js/chat.js", "/static/vendor/marked.esm.js"]:
                response = http.get(asset)
                assert response.status_code == 200, asset
            assert (
                http.get("/static/js/app.js").headers["content-type"].startswith("text/javascript")
            )
            assert http.get("/static/%2e%2e/api/web.py").status_code == 404
            assert http.get("/v1/models").status_code == 401
    finally:
        srv.stop()


def test_message_streams_and_shows_figures(page: Page, server: Server) -> None:
    open_page(page, server)
    page.fill("#max-tokens", "16")
    # Record the answer's text length at every DOM change: streamed text grows in steps.
    page.evaluate(
        """() => {
            window.lengths = [];
            new MutationObserver(() => {
                const node = document.querySelector('.answer .choice-content');
                if (node) window.lengths.push(node.textContent.length);
            }).observe(document.getElementById('messages'),
                       {childList: true, subtree: true, characterData: true});
        }"""
    )
    exchange = send(page, "Tell me a short story about a robot.")
    assert exchange.request["stream"] is True
    assert exchange.request["stream_options"] == {"include_usage": True}
    assert exchange.request["max_completion_tokens"] == 16

    lengths = [n for n in page.evaluate("window.lengths") if n > 0]
    assert len(set(lengths)) >= 3, f"the text did not grow while streaming: {lengths}"
    assert lengths == sorted(lengths)
    shown = page.locator(".answer .choice-content").inner_html()
    expected = page.evaluate(
        "async (text) => (await import('/static/js/render.js')).markdown(text)", exchange.content()
    )
    assert shown == expected, "the page's text is not the streamed text"

    usage = exchange.chunks[-1]["usage"]
    assert int(fact(page, "prompt")) == usage["prompt_tokens"]
    assert int(fact(page, "completion")) == usage["completion_tokens"]
    assert int(fact(page, "total")) == usage["total_tokens"]
    assert int(fact(page, "cached")) == usage["prompt_tokens_details"]["cached_tokens"]
    finish = next(
        c["finish_reason"] for ch in exchange.chunks for c in ch["choices"] if c["finish_reason"]
    )
    assert fact(page, "finish") == finish
    assert fact(page, "time to first token").endswith(" ms")
    assert float(fact(page, "tokens/s")) > 0


def test_markdown_is_rendered_as_code_and_sanitised(page: Page, server: Server) -> None:
    open_page(page, server)
    html = page.evaluate(
        """async () => (await import('/static/js/render.js')).markdown(
            '# Title\\n\\n```python\\nprint(1)\\n```\\n\\n<img src=x onerror="alert(1)">'
            + '<script>alert(2)</script>[x](javascript:alert(3))')"""
    )
    assert "<h1>Title</h1>" in html
    assert re.search(r'<pre><code class="language-python">print\(1\)\s*</code></pre>', html)
    assert "onerror" not in html and "<script" not in html and "javascript:" not in html


def test_errors_are_shown(page: Page, server: Server) -> None:
    open_page(page, server)
    page.fill("#n", "500")
    page.fill("#prompt", "Hi")
    page.press("#prompt", "Enter")
    error = page.locator(".answer .error")
    error.wait_for()
    assert "n" in error.inner_text() and "500" in error.inner_text()
    assert page.is_enabled("#send")

    page.fill("#n", "1")
    page.fill("#tools", "[{not json")
    page.fill("#prompt", "Hi")
    page.press("#prompt", "Enter")
    assert "Tools is not valid JSON" in page.locator("#notice").inner_text()


def test_error_event_mid_stream_is_shown(page: Page, server: Server) -> None:
    # chatd sends an error event only when a stream breaks (a failed store write, say),
    # which no request can trigger on purpose: the browser gets such a stream from a route.
    chunk = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "smollm2",
        "choices": [{"index": 0, "delta": {"content": "Half an ans"}, "finish_reason": None}],
    }
    error = {"error": {"message": "The server had an error.", "type": "server_error"}}
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(error)}\n\n"
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body),
    )
    open_page(page, server)
    page.fill("#prompt", "Hi")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".answer.done")
    assert page.locator(".answer .choice-content").inner_text() == "Half an ans"
    assert page.locator(".answer .error").inner_text() == "The server had an error."


def test_stop_cancels_the_generation(page: Page, server: Server) -> None:
    open_page(page, server)
    page.fill("#max-tokens", "4000")
    page.click("summary")
    page.fill("#extra", '{"ignore_eos": true}')
    cancelled = metric(server, "chatd_cancelled_requests_total")
    page.fill("#prompt", "Count from one to one thousand in words.")
    page.press("#prompt", "Enter")
    page.wait_for_function(
        "document.querySelector('.answer .choice-content')?.textContent.length > 0"
    )
    assert metric(server, "chatd_running_sequences") >= 1
    page.click("#stop")
    page.wait_for_selector(".answer .stopped")
    deadline = time.monotonic() + 10
    while metric(server, "chatd_running_sequences") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, "chatd_running_sequences") == 0
    assert metric(server, "chatd_running_requests") == 0
    assert metric(server, "chatd_cancelled_requests_total") == cancelled + 1
    text = page.locator(".answer .choice-content").inner_text()
    time.sleep(0.3)
    assert page.locator(".answer .choice-content").inner_text() == text
    assert page.is_enabled("#send") and not page.is_enabled("#stop")


def test_json_schema_answer_matches_the_schema(page: Page, server: Server) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 16},
            "country": {"type": "string", "maxLength": 16},
        },
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    open_page(page, server)
    page.fill("#max-tokens", "80")
    page.fill("#temperature", "0")
    page.select_option("#format", "json_schema")
    page.fill("#schema", json.dumps(schema))
    exchange = send(page, "Name a large city and its country.")
    assert exchange.request["response_format"]["type"] == "json_schema"
    assert exchange.request["response_format"]["json_schema"]["schema"] == schema
    assert fact(page, "finish") == "stop"
    shown = json.loads(page.locator(".answer .choice-content pre.json").inner_text())
    jsonschema.validate(shown, schema)
    assert shown == json.loads(exchange.content())


def test_tool_call_is_shown_as_a_card(page: Page, server: Server) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The current weather in a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "maxLength": 16}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    open_page(page, server)
    page.fill("#max-tokens", "60")
    page.fill("#tools", json.dumps(tools))
    page.click("summary")
    page.fill("#extra", '{"tool_choice": "required"}')
    exchange = send(page, "What is the weather in Paris?")
    assert exchange.request["tools"] == tools
    card = page.locator(".answer .tool-call")
    assert card.count() == 1
    assert card.locator(".tool-name").inner_text() == "get_weather"
    arguments = json.loads(card.locator(".tool-args").inner_text())
    assert isinstance(arguments["city"], str)
    streamed = "".join(
        call["function"].get("arguments") or ""
        for chunk in exchange.chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
    )
    assert arguments == json.loads(streamed)
    assert fact(page, "finish") == "tool_calls"


def test_n_choices_side_by_side_with_logprobs_on_hover(page: Page, server: Server) -> None:
    open_page(page, server)
    page.fill("#max-tokens", "12")
    page.fill("#n", "2")
    page.check("#logprobs")
    page.fill("#top-logprobs", "3")
    exchange = send(page, "Say something nice.")
    assert exchange.request["n"] == 2 and exchange.request["top_logprobs"] == 3
    choices = page.locator(".answer .choice")
    assert choices.count() == 2
    first, second = (choices.nth(i).bounding_box() for i in range(2))
    assert first and second and second["x"] > first["x"], "choices are not side by side"
    for index in range(2):
        tokens = choices.nth(index).locator(".tok")
        assert "".join(tokens.all_inner_texts()) == exchange.content(index)
    choices.nth(0).locator(".tok").first.hover()
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible()
    assert tooltip.locator("tr").count() >= 2
    assert "%" in tooltip.inner_text()


def test_stored_completion_open_and_delete(page: Page, server: Server) -> None:
    run = uuid.uuid4().hex[:12]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    open_page(page, server)
    page.fill("#max-tokens", "16")
    page.check("#store")
    page.fill("#metadata", f"suite=web, run={run}")
    exchange = send(page, "Say hello.")
    assert exchange.request["store"] is True
    assert exchange.request["metadata"] == {"suite": "web", "run": run}
    completion_id = exchange.chunks[0]["id"]
    assert page.locator(".answer .stored-link").inner_text() == f"stored as {completion_id}"

    page.click(".tab[data-view=stored]")
    page.fill("#stored-metadata", f"run={run}")
    with page.expect_response(lambda r: "/v1/chat/completions?" in r.url) as listed:
        page.click("#stored-filter button[type=submit]")
    assert f"metadata%5Brun%5D={run}" in listed.value.url
    rows = page.locator("#stored-table tbody tr")
    rows.first.wait_for()
    assert rows.count() == 1
    rows.first.click()
    detail = page.locator("#stored-detail")
    detail.locator("h2").wait_for()
    assert detail.locator("h2").inner_text() == completion_id
    assert "Say hello." in detail.locator(".stored-message").inner_text()
    page.screenshot(path=str(ARTIFACTS / "test_stored_completion_open_and_delete-open.png"))
    stored = server.client().chat.completions.retrieve(completion_id)
    assert stored.choices[0].message.content == exchange.content()
    assert stored.metadata == {"suite": "web", "run": run}

    page.click("#stored-delete")
    page.locator("#stored-empty").wait_for()
    assert rows.count() == 0
    with pytest.raises(openai.NotFoundError):
        server.client().chat.completions.retrieve(completion_id)


def test_api_key_box(browser: Browser, tmp_path: Path) -> None:
    srv = Server(tmp_path, "--api-key", "sk-web-test").start()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_FETCHES)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        page.goto(srv.url + "/")
        page.locator("#key-form").wait_for()
        assert "API key" in page.locator("#notice").inner_text()
        page.fill("#api-key", "sk-web-test")
        page.click("#key-form button")
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        assert page.evaluate("localStorage.getItem('chatd.apiKey')") == "sk-web-test"
        page.fill("#max-tokens", "8")
        exchange = send(page, "Hi")
        assert exchange.request["max_completion_tokens"] == 8
        page.reload()
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "test_api_key_box.png"))
        assert not any("sk-web-test" in url for url in urls)
    finally:
        context.close()
        srv.stop()
