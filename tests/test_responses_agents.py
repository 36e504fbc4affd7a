"""The OpenAI Agents SDK against chatd: an agent with a function tool, through the
SDK's Responses model and through its Chat Completions model. Tracing is off (it
would send traces to OpenAI)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    RunResult,
    RunResultStreaming,
    function_tool,
    set_tracing_disabled,
)
from agents.items import MessageOutputItem, ToolCallItem, ToolCallOutputItem
from agents.models.interface import Model
from openai import AsyncOpenAI
from pydantic import BaseModel

from tests.conftest import MODEL, Server

CITIES: list[str] = []


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)
    CITIES.clear()
    yield


def client(server: Server) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def models(server: Server) -> dict[str, Model]:
    return {
        "responses": OpenAIResponsesModel(MODEL, client(server)),
        "chat_completions": OpenAIChatCompletionsModel(MODEL, client(server)),
    }


class Answer(BaseModel):
    sunny: bool


@function_tool(name_override="get_weather", is_enabled=lambda ctx, agent: not CITIES)
def get_weather_once(city: str) -> str:
    """The current weather in a city (offered until it has been called once)."""
    CITIES.append(city)
    return f"Sunny in {city}"


async def run(agent: Agent[None], text: str, streamed: bool) -> RunResult | RunResultStreaming:
    if not streamed:
        return await Runner.run(agent, text, max_turns=4)
    result = Runner.run_streamed(agent, text, max_turns=4)
    kinds = {event.type async for event in result.stream_events()}
    assert "raw_response_event" in kinds
    return result


@pytest.mark.parametrize(
    ("api", "streamed"), [("responses", False), ("responses", True), ("chat_completions", False)]
)
def test_agent_answers_after_its_tool(server: Server, api: str, streamed: bool) -> None:
    """The tool's output goes back to the model, which then writes the final answer
    (structured, so the tiny model's answer is short enough to be complete; the tool is
    offered once, so the tiny model cannot call it forever)."""
    agent = Agent(
        name="weather",
        instructions="Call get_weather once, then answer.",
        model=models(server)[api],
        tools=[get_weather_once],
        output_type=Answer,
        model_settings=ModelSettings(tool_choice="required", max_tokens=32, temperature=0),
        reset_tool_choice=True,
    )
    result = asyncio.run(run(agent, "Is it sunny in Oslo?", streamed))
    assert len(CITIES) == 1 and isinstance(result.final_output, Answer)
    kinds = [type(item) for item in result.new_items]
    assert kinds[:2] == [ToolCallItem, ToolCallOutputItem] and kinds[-1] is MessageOutputItem
    assert all(r.usage.input_tokens > 0 and r.usage.output_tokens > 0 for r in result.raw_responses)
