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
    function_tool,
    set_tracing_disabled,
)
from agents.items import ToolCallItem, ToolCallOutputItem
from agents.models.interface import Model
from openai import AsyncOpenAI

from tests.conftest import MODEL, Server

CITIES: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    CITIES.append(city)
    return f"Sunny in {city}"


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


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_agent_calls_its_tool(server: Server, api: str) -> None:
    agent = Agent(
        name="weather",
        instructions="You answer questions about the weather with the get_weather tool.",
        model=models(server)[api],
        tools=[get_weather],
        model_settings=ModelSettings(tool_choice="get_weather", max_tokens=48, temperature=0),
        tool_use_behavior="stop_on_first_tool",
    )
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?", max_turns=2))
    assert len(CITIES) == 1 and CITIES[0]
    assert result.final_output == f"Sunny in {CITIES[0]}"
    kinds = [type(item) for item in result.new_items]
    assert kinds == [ToolCallItem, ToolCallOutputItem]


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_agent_answers_after_its_tool(server: Server, api: str) -> None:
    """The tool's output goes back to the model, which then writes the final answer."""
    agent = Agent(
        name="weather",
        instructions="Call get_weather once, then answer in a few words.",
        model=models(server)[api],
        tools=[get_weather],
        model_settings=ModelSettings(tool_choice="required", max_tokens=32, temperature=0),
        reset_tool_choice=True,
    )
    result = asyncio.run(Runner.run(agent, "Weather in Oslo?", max_turns=4))
    assert CITIES and isinstance(result.final_output, str) and result.final_output
    assert isinstance(result.new_items[0], ToolCallItem)
