"""Validation of `metadata` maps with the OpenAI API's error codes and messages."""

from __future__ import annotations

from typing import Any

from chatd.api.errors import APIError
from chatd.api.validation import json_type

MAX_PAIRS = 16
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 512


def _abbreviate(key: str) -> str:
    return f"{key[:3]}...{key[-3:]}" if len(key) > 9 else key


def validate_metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """Return `value` as a metadata map (null -> {}), or raise the API's 400 error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise APIError(
            f"Invalid type for '{param}': expected a metadata object, "
            f"but got {json_type(value)} instead.",
            param=param,
            code="invalid_type",
        )
    if len(value) > MAX_PAIRS:
        raise APIError(
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{MAX_PAIRS} properties, but got an object with {len(value)} properties instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > MAX_KEY_LENGTH:
            raise APIError(
                f"Invalid property name in '{param}': '{_abbreviate(key)}' is too long. "
                f"Expected a string with maximum length {MAX_KEY_LENGTH}, "
                f"but got a string with length {len(key)} instead.",
                param=f"{param}.{key}",
                code="property_name_above_max_length",
            )
        if not isinstance(item, str):
            raise APIError(
                f"Invalid type for '{param}.{key}': expected a string, "
                f"but got {json_type(item)} instead.",
                param=f"{param}.{key}",
                code="invalid_type",
            )
        for text, what in ((key, "property name"), (item, "value")):
            if "\x00" in text:  # PostgreSQL's text cannot hold it: refused on every store
                raise APIError(
                    f"Invalid {what} in '{param}': strings cannot contain the null character "
                    "(\\u0000).",
                    param=f"{param}.{key}",
                    code="invalid_value",
                )
        if len(item) > MAX_VALUE_LENGTH:
            raise APIError(
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum "
                f"length {MAX_VALUE_LENGTH}, but got a string with length {len(item)} instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )
    return dict(value)
