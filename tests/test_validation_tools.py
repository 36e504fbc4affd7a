"""parse_chat_request on tools, functions, tool_choice, response_format and prediction."""

from __future__ import annotations

from typing import Any

from tests.test_validation import custom_tool, fails, function_tool


def test_tool_definitions() -> None:
    def tool_error(tools: Any, param: str, code: str | None, message: str) -> None:
        fails(param, code, message, tools=tools)

    tool_error(
        [],
        "tools",
        "empty_array",
        "Invalid 'tools': empty array. Expected an array "
        "with minimum length 1, but got an empty array instead.",
    )
    tool_error(
        [function_tool(f"f{i}") for i in range(129)],
        "tools",
        "array_above_max_length",
        "Invalid 'tools': array too long. Expected an array with maximum length 128, "
        "but got an array with length 129 instead.",
    )
    tool_error(
        ["f"],
        "tools[0]",
        "invalid_type",
        "Invalid type for 'tools[0]': expected an object, but got a string instead.",
    )
    tool_error(
        [{"type": "function"}],
        "tools[0].function",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].function'.",
    )
    tool_error(
        [{"type": "web"}],
        "tools[0].type",
        "invalid_value",
        "Invalid value: 'web'. Supported values are: 'function' and 'custom'.",
    )
    tool_error(
        [{"type": "function", "function": {}}],
        "tools[0].function.name",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].function.name'.",
    )
    tool_error(
        [function_tool("")],
        "tools[0].function.name",
        "empty_string",
        "Invalid 'tools[0].function.name': empty string. Expected a string with minimum "
        "length 1, but got an empty string instead.",
    )
    tool_error(
        [function_tool("a b")],
        "tools[0].function.name",
        "invalid_value",
        "Invalid 'tools[0].function.name': string does not match pattern. Expected a "
        "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
    )
    tool_error(
        [function_tool("a" * 65)],
        "tools[0].function.name",
        "string_above_max_length",
        "Invalid 'tools[0].function.name': string too long. Expected a string with "
        "maximum length 64, but got a string with length 65 instead.",
    )
    tool_error(
        [function_tool("f", parameters="x")],
        "tools[0].function.parameters",
        "invalid_type",
        "Invalid type for 'tools[0].function.parameters': expected an "
        "object, but got a string instead.",
    )
    tool_error(
        [function_tool("f", strict="yes")],
        "tools[0].function.strict",
        "invalid_type",
        "Invalid type for 'tools[0].function.strict': expected a boolean, but got a "
        "string instead.",
    )
    tool_error(
        [function_tool("f", examples=[])],
        "tools[0].function.examples",
        "unknown_parameter",
        "Unknown parameter: 'tools[0].function.examples'.",
    )
    tool_error(
        [function_tool("f"), custom_tool("f")],
        "tools",
        None,
        "Invalid 'tools': duplicate function name 'f'.",
    )
    grammar = {"type": "grammar", "grammar": {"definition": "x", "syntax": "peg"}}
    tool_error(
        [custom_tool("c", format=grammar)],
        "tools[0].custom.format.grammar.syntax",
        "invalid_value",
        "Invalid value: 'peg'. Supported values are: 'lark' and 'regex'.",
    )
    tool_error(
        [custom_tool("c", format={"type": "grammar"})],
        "tools[0].custom.format.grammar",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].custom.format.grammar'.",
    )


def test_tool_choice_shape_and_references() -> None:
    tools = [function_tool("f"), custom_tool("c")]

    def choice_error(choice: Any, param: str, code: str | None, message: str) -> None:
        fails(param, code, message, tools=tools, tool_choice=choice)

    choice_error(
        {"type": "bogus"},
        "tool_choice.function",
        "missing_required_parameter",
        "Missing required parameter: 'tool_choice.function'.",
    )
    choice_error(
        {"type": "function", "function": {}},
        "tool_choice.function.name",
        "missing_required_parameter",
        "Missing required parameter: 'tool_choice.function.name'.",
    )
    choice_error(
        {"type": "function", "function": {"name": "nope"}},
        "function_call",
        None,
        "Invalid value for 'function_call': no function named 'nope' was specified in "
        "the 'functions' parameter.",
    )
    choice_error(
        {"type": "function", "function": {"name": "c"}},
        "function_call",
        None,
        "Invalid value for 'function_call': no function named 'c' was specified in "
        "the 'functions' parameter.",
    )
    choice_error(
        {"type": "custom", "custom": {"name": "nope"}},
        "tool_choice",
        None,
        "Invalid value for 'tool_choice': no custom tool named 'nope' was specified "
        "in the 'tools' parameter.",
    )
    allowed = {"mode": "sometimes", "tools": []}
    choice_error(
        {"type": "allowed_tools", "allowed_tools": allowed},
        "tool_choice.allowed_tools.mode",
        "invalid_value",
        "Invalid value: 'sometimes'. Supported values are: 'auto' and 'required'.",
    )
    allowed = {"mode": "auto", "tools": [{"type": "function", "function": {"name": "x"}}]}
    choice_error(
        {"type": "allowed_tools", "allowed_tools": allowed},
        "tool_choice.allowed_tools.tools[0]",
        None,
        "Invalid value for 'tool_choice.allowed_tools.tools[0]': no function named "
        "'x' was specified in the 'tools' parameter.",
    )


def test_functions_and_function_call() -> None:
    fails(
        "functions[0].name",
        "missing_required_parameter",
        "Missing required parameter: 'functions[0].name'.",
        functions=[{"parameters": {}}],
    )
    fails(
        "functions",
        "empty_array",
        "Invalid 'functions': empty array. Expected an array "
        "with minimum length 1, but got an empty array instead.",
        functions=[],
    )
    functions = [{"name": "f"}]
    fails(
        "function_call.name",
        "missing_required_parameter",
        "Missing required parameter: 'function_call.name'.",
        functions=functions,
        function_call={"x": 1},
    )
    fails(
        "function_call",
        "invalid_value",
        "Invalid value: 'required'. Supported values are: 'none' and 'auto'.",
        functions=functions,
        function_call="required",
    )
    fails(
        "function_call",
        None,
        "Invalid value for 'function_call': no function named 'g' "
        "was specified in the 'functions' parameter.",
        functions=functions,
        function_call={"name": "g"},
    )


def test_response_format() -> None:
    def format_error(fmt: Any, param: str, code: str, message: str) -> None:
        fails(param, code, message, response_format=fmt)

    format_error(
        {},
        "response_format.type",
        "missing_required_parameter",
        "Missing required parameter: 'response_format.type'.",
    )
    format_error(
        {"type": "xml"},
        "response_format.type",
        "invalid_value",
        "Invalid value: 'xml'. Supported values are: 'json_object', 'json_schema', and 'text'.",
    )
    format_error(
        {"type": "json_schema"},
        "response_format.json_schema",
        "missing_required_parameter",
        "Missing required parameter: 'response_format.json_schema'.",
    )
    format_error(
        {"type": "json_schema", "json_schema": {}},
        "response_format.json_schema.name",
        "missing_required_parameter",
        "Missing required parameter: 'response_format.json_schema.name'.",
    )
    format_error(
        {"type": "json_schema", "json_schema": {"name": "a.b"}},
        "response_format.json_schema.name",
        "invalid_value",
        "Invalid 'response_format.json_schema.name': string does not match pattern. "
        "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
    )
    format_error(
        {"type": "json_schema", "json_schema": {"name": "a", "schema": []}},
        "response_format.json_schema.schema",
        "invalid_type",
        "Invalid type for 'response_format.json_schema.schema': expected an object, "
        "but got an array instead.",
    )
    format_error(
        {"type": "json_object", "schema": {}},
        "response_format.schema",
        "unknown_parameter",
        "Unknown parameter: 'response_format.schema'.",
    )


def test_prediction_shape() -> None:
    def prediction_error(prediction: Any, param: str, code: str, message: str) -> None:
        fails(param, code, message, prediction=prediction)

    prediction_error(
        {"type": "content"},
        "prediction.content",
        "missing_required_parameter",
        "Missing required parameter: 'prediction.content'.",
    )
    prediction_error(
        {"type": "diff", "content": "x"},
        "prediction.type",
        "invalid_value",
        "Invalid value: 'diff'. Supported values are: 'content'.",
    )
    prediction_error(
        {"type": "content", "content": 5},
        "prediction.content",
        "invalid_type",
        "Invalid type for 'prediction.content': expected one of a string or array "
        "of objects, but got an integer instead.",
    )
    prediction_error(
        {"type": "content", "content": []},
        "prediction.content",
        "empty_array",
        "Invalid 'prediction.content': empty array. Expected an array with minimum "
        "length 1, but got an empty array instead.",
    )
    prediction_error(
        {"type": "content", "content": [{"type": "image_url"}]},
        "prediction.content[0].type",
        "invalid_value",
        "Invalid value: 'image_url'. Supported values are: 'text'.",
    )
