"""`response_format` as the OpenAI API defines it: what a request asks its content to be.

A validated request's `response_format` is one of these dicts exactly as the client sent
it, so a remote backend can forward it unchanged; `type` tells them apart.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class JSONSchemaSpec(TypedDict):
    """`response_format.json_schema`: the schema the content must validate against."""

    name: str
    description: NotRequired[str | None]
    schema: NotRequired[dict[str, Any] | None]  # absent or null: any JSON
    strict: NotRequired[bool | None]


class TextFormat(TypedDict):
    type: Literal["text"]


class JSONObjectFormat(TypedDict):
    type: Literal["json_object"]


class JSONSchemaFormat(TypedDict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = TextFormat | JSONObjectFormat | JSONSchemaFormat
