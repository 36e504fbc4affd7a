"""Streams checked against the OpenAPI document chatd serves: chat completions' chunks and
the Responses API's events."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from referencing import Registry, Resource

DRAFT = "https://json-schema.org/draft/2020-12/schema"


RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


class StreamValidator:
    """Every `data:` event of a stream against CreateChatCompletionStreamResponse, or of a
    Responses API stream against ResponseStreamEvent."""

    def __init__(self, document: dict[str, Any]) -> None:
        resource = Resource.from_contents({"$schema": DRAFT, **document})
        self.registry = Registry().with_resource("urn:chatd", resource)
        self.chunk = self.validator("CreateChatCompletionStreamResponse")
        self.error = self.validator("ErrorResponse")
        self.event = self.validator("ResponseStreamEvent")

    def validator(self, name: str) -> jsonschema.Draft202012Validator:
        ref = {"$ref": f"urn:chatd#/components/schemas/{name}"}
        return jsonschema.Draft202012Validator(ref, registry=self.registry)

    def chunk_problem(self, chunk: Any) -> str | None:
        error = jsonschema.exceptions.best_match(self.chunk.iter_errors(chunk))
        return None if error is None else f"chunk: {error.message} at {list(error.path)}"

    def problems(
        self, events: list[str], responses: bool = False, resumed: bool = False
    ) -> list[str]:
        """What is wrong with a whole stream: each chunk valid, `[DONE]` or an error last.

        `resumed`: a Responses stream asked for from `starting_after`, which may be past
        its last event: then nothing is left to send.
        """
        if not events:
            return [] if resumed else ["a stream without events"]
        if responses:
            return self.response_problems(events)
        found: list[str] = []
        for data in events[:-1]:
            if data == "[DONE]":
                found.append("[DONE] before the end of the stream")
                continue
            problem = self.chunk_problem(json.loads(data))
            if problem:
                found.append(problem)
        last = events[-1]
        if last != "[DONE]":
            parsed = json.loads(last)
            if "error" not in parsed or not self.error.is_valid(parsed):
                found.append(f"a stream that ends without [DONE] or an error: {last[:200]}")
        return found

    def response_problems(self, events: list[str]) -> list[str]:
        """Each event valid, numbered in order from 0, and one that ends a response last."""
        found: list[str] = []
        parsed = [json.loads(data) for data in events]
        for i, event in enumerate(parsed):
            error = jsonschema.exceptions.best_match(self.event.iter_errors(event))
            if error is not None:
                found.append(f"event {event.get('type')}: {error.message} at {list(error.path)}")
            if event.get("sequence_number") != parsed[0].get("sequence_number", 0) + i:
                found.append(f"event {i}: sequence_number {event.get('sequence_number')}")
        if parsed[-1].get("type") not in RESPONSE_ENDS:
            found.append(f"a Responses stream that ends with {parsed[-1].get('type')}")
        return found


def events_of(text: str) -> list[str]:
    """The `data:` payloads of an SSE body."""
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
