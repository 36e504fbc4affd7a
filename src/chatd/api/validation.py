"""Checks on decoded JSON that fail with the OpenAI API's own error messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

from chatd.api.errors import APIError

NAME_PATTERN = "^[a-zA-Z0-9_-]+$"
_NAME = re.compile(r"[a-zA-Z0-9_-]+")

Number = int | float


def json_type(value: Any) -> str:
    """The JSON type of `value` with its article, as the API's messages write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def quoted(values: Sequence[str], last: str = "and") -> str:
    """'a', 'b', and 'c' — the API's way of listing values."""
    items = [f"'{value}'" for value in values]
    if len(items) < 3:
        return f" {last} ".join(items)
    return ", ".join(items[:-1]) + f", {last} {items[-1]}"


def missing(param: str) -> APIError:
    return APIError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def invalid_type(param: str, expected: str, value: Any) -> APIError:
    return APIError(
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, value: str, allowed: Sequence[str]) -> APIError:
    return APIError(
        f"Invalid value: '{value}'. Supported values are: {quoted(allowed)}.",
        param=param,
        code="invalid_value",
    )


def unknown_parameter(param: str) -> APIError:
    return APIError(f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")


def unsupported_parameter(param: str, model: str | None = None) -> APIError:
    return APIError(
        f"Unsupported parameter: '{param}' is not supported with {_this(model)}.",
        param=param,
        code="unsupported_parameter",
    )


def unsupported_value(
    param: str, value: str, allowed: Sequence[str], model: str | None = None
) -> APIError:
    return APIError(
        f"Unsupported value: '{param}' does not support '{value}' with {_this(model)}. "
        f"Supported values are: {quoted(allowed)}.",
        param=param,
        code="unsupported_value",
    )


def _this(model: str | None) -> str:
    """OpenAI's "this model", naming the model when the caller knows which."""
    return "this model" if model is None else f"this model ({model})"


def empty_array(param: str) -> APIError:
    return APIError(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
        param=param,
        code="empty_array",
    )


def out_of_range(
    param: str, value: Number, *, kind: str, bound: Number, above: bool, op: str = ""
) -> APIError:
    side, word = ("above", "maximum") if above else ("below", "minimum")
    op = op or ("<=" if above else ">=")
    return APIError(
        f"Invalid '{param}': {kind} {side} {word} value. Expected a value {op} {bound}, "
        f"but got {value!r} instead.",
        param=param,
        code=f"{kind}_{side}_{word[:3]}_value",
    )


def check_range(
    param: str,
    value: Number,
    minimum: Number | None = None,
    maximum: Number | None = None,
    *,
    kind: str = "decimal",
    exclusive_minimum: bool = False,
) -> None:
    """Bounds of an `integer` or `decimal` parameter."""
    if minimum is not None:
        if exclusive_minimum and value <= minimum:
            raise out_of_range(param, value, kind=kind, bound=minimum, above=False, op=">")
        if value < minimum:
            raise out_of_range(param, value, kind=kind, bound=minimum, above=False)
    if maximum is not None and value > maximum:
        raise out_of_range(param, value, kind=kind, bound=maximum, above=True)


def check_length(param: str, value: str, *, min_length: int = 0, max_length: int | None) -> None:
    if min_length and not value:
        raise APIError(
            f"Invalid '{param}': empty string. Expected a string with minimum length "
            f"{min_length}, but got an empty string instead.",
            param=param,
            code="empty_string",
        )
    if max_length is not None and len(value) > max_length:
        raise APIError(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )


def check_name(param: str, value: str, max_length: int = 64) -> None:
    """A tool, function or schema name: 1..64 of [a-zA-Z0-9_-]."""
    check_length(param, value, min_length=1, max_length=max_length)
    if not _NAME.fullmatch(value):
        raise APIError(
            f"Invalid '{param}': string does not match pattern. "
            f"Expected a string that matches the pattern '{NAME_PATTERN}'.",
            param=param,
            code="invalid_value",
        )


class Obj:
    """A JSON object under validation; `at` is its path in error params ('' for the body)."""

    __slots__ = ("at", "data")

    def __init__(self, data: dict[str, Any], at: str = "") -> None:
        self.data = data
        self.at = at

    @classmethod
    def of(cls, value: Any, param: str, expected: str = "an object") -> Obj:
        if not isinstance(value, dict):
            raise invalid_type(param, expected, value)
        return cls(value, param)

    def path(self, key: str) -> str:
        return f"{self.at}.{key}" if self.at else key

    def has(self, key: str) -> bool:
        """Whether `key` is present and not null."""
        return self.data.get(key) is not None

    def only(self, known: Collection[str]) -> None:
        """Reject the first member not in `known`."""
        for key in self.data:
            if key not in known:
                raise unknown_parameter(self.path(key))

    def value(self, key: str, *, required: bool = False) -> Any:
        """The member's value; None if absent or null. A required member must be present."""
        if required and key not in self.data:
            raise missing(self.path(key))
        return self.data.get(key)

    def _typed(self, key: str, required: bool, expected: str, test: Callable[[Any], bool]) -> Any:
        value = self.value(key, required=required)
        if value is None and not required:
            return None
        if not test(value):
            raise invalid_type(self.path(key), expected, value)
        return value

    def boolean(self, key: str) -> bool | None:
        return self._typed(key, False, "a boolean", lambda v: isinstance(v, bool))

    def integer(
        self,
        key: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._typed(key, False, "an integer", is_integer)
        if value is not None:
            check_range(self.path(key), value, minimum, maximum, kind="integer")
        return value

    def decimal(
        self,
        key: str,
        *,
        minimum: Number | None = None,
        maximum: Number | None = None,
        exclusive_minimum: bool = False,
    ) -> Number | None:
        value = self._typed(key, False, "a decimal", is_number)
        if value is not None:
            check_range(
                self.path(key), value, minimum, maximum, exclusive_minimum=exclusive_minimum
            )
        return value

    def string(self, key: str, *, max_length: int | None = None) -> str | None:
        value = self._typed(key, False, "a string", lambda v: isinstance(v, str))
        if value is not None:
            check_length(self.path(key), value, max_length=max_length)
        return value

    def name(self, key: str, max_length: int = 64) -> str:
        """A required name matching NAME_PATTERN."""
        value = self.text(key)
        check_name(self.path(key), value, max_length)
        return value

    def enum(self, key: str, allowed: Sequence[str]) -> str | None:
        value = self.string(key)
        if value is not None and value not in allowed:
            raise invalid_value(self.path(key), value, allowed)
        return value

    def text(self, key: str) -> str:
        """A required string."""
        return self._typed(key, True, "a string", lambda v: isinstance(v, str))

    def pick(self, key: str, allowed: Sequence[str]) -> str:
        """A required string enum."""
        value = self.text(key)
        if value not in allowed:
            raise invalid_value(self.path(key), value, allowed)
        return value

    def child(self, key: str, expected: str = "an object") -> Obj:
        """A required object."""
        return Obj(self._typed(key, True, expected, lambda v: isinstance(v, dict)), self.path(key))

    def object(self, key: str, *, expected: str = "an object") -> Obj | None:
        value = self._typed(key, False, expected, lambda v: isinstance(v, dict))
        return None if value is None else Obj(value, self.path(key))

    def array(
        self,
        key: str,
        *,
        required: bool = False,
        expected: str = "an array",
        min_items: int = 0,
        max_items: int | None = None,
    ) -> list[Any] | None:
        value = self._typed(key, required, expected, lambda v: isinstance(v, list))
        if value is None:
            return None
        param = self.path(key)
        if min_items and not value:
            raise empty_array(param)
        if max_items is not None and len(value) > max_items:
            raise APIError(
                f"Invalid '{param}': array too long. Expected an array with maximum length "
                f"{max_items}, but got an array with length {len(value)} instead.",
                param=param,
                code="array_above_max_length",
            )
        return value

    def objects(self, key: str, **kwargs: Any) -> list[Obj] | None:
        """An array whose items must all be objects."""
        items = self.array(key, **kwargs)
        if items is None:
            return None
        param = self.path(key)
        return [Obj.of(item, f"{param}[{i}]") for i, item in enumerate(items)]
