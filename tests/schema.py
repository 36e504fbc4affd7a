"""Validation against the official OpenAI schemas (copied into fixtures/openai_schemas.json)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "openai_schemas.json"
# the Responses API's schemas (scripts/openai_fixture.py): Response, ResponseStreamEvent, ...
RESPONSES_FIXTURE = FIXTURES / "openai_responses_schemas.json"


@cache
def _validator(name: str, fixture: Path = FIXTURE) -> jsonschema.Draft202012Validator:
    document = json.loads(fixture.read_text())
    registry = Registry().with_resource(
        "urn:openai",
        Resource.from_contents(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": document["$defs"]}
        ),
    )
    schema = {"$ref": f"urn:openai#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(name: str, instance: Any, fixture: Path = FIXTURE) -> None:
    """Raise jsonschema.ValidationError unless `instance` is a valid `name`."""
    errors = sorted(_validator(name, fixture).iter_errors(instance), key=lambda e: e.path)
    if errors:
        raise AssertionError(f"not a valid {name}: {errors[0].message} at {list(errors[0].path)}")


def validate_responses(name: str, instance: Any) -> None:
    """`validate` against the Responses API's schemas."""
    validate(name, instance, RESPONSES_FIXTURE)


@cache
def _event_schemas() -> dict[str, str]:
    """Stream event type -> the name of its schema (from ResponseStreamEvent's union)."""
    defs = json.loads(RESPONSES_FIXTURE.read_text())["$defs"]
    names: dict[str, str] = {}
    for ref in defs["ResponseStreamEvent"]["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        names[defs[name]["properties"]["type"]["enum"][0]] = name
    return names


def validate_event(event: dict[str, Any]) -> None:
    """A Responses stream event against the schema of its own type (and the union)."""
    name = _event_schemas().get(event.get("type", ""))
    assert name is not None, f"not a Responses stream event type: {event.get('type')!r}"
    validate_responses(name, event)
    validate_responses("ResponseStreamEvent", event)
