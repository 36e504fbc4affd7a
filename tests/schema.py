"""Validation against the official OpenAI schemas (copied into fixtures/openai_schemas.json)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

FIXTURE = Path(__file__).parent / "fixtures" / "openai_schemas.json"


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    document = json.loads(FIXTURE.read_text())
    registry = Registry().with_resource(
        "urn:openai",
        Resource.from_contents(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": document["$defs"]}
        ),
    )
    schema = {"$ref": f"urn:openai#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(name: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError unless `instance` is a valid `name`."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: e.path)
    if errors:
        raise AssertionError(f"not a valid {name}: {errors[0].message} at {list(errors[0].path)}")
