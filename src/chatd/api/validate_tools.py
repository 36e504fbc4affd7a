"""Validation of tools, functions, tool_choice, function_call and response_format."""

from __future__ import annotations

from typing import Any, Literal

from chatd.api.errors import APIError
from chatd.api.validation import Obj, invalid_type, invalid_value, quoted
from chatd.backend import ToolChoice, ToolSpec

MAX_TOOLS = 128
TOOL_TYPES = ("function", "custom")
CHOICE_MODES = ("none", "auto", "required")
CHOICE_TYPES = ("function", "custom", "allowed_tools")
FUNCTION_CALL_MODES = ("none", "auto")
RESPONSE_FORMATS = ("json_object", "json_schema", "text")
GRAMMAR_SYNTAXES = ("lark", "regex")


def check_functions(body: Obj) -> None:
    """The deprecated `functions`."""
    functions = body.objects(
        "functions",
        expected="an array of function definitions",
        min_items=1,
        max_items=MAX_TOOLS,
    )
    for function in functions or ():
        function.name("name")
        function.string("description")
        function.object("parameters")
        function.only(("name", "description", "parameters"))
    _check_unique("functions", [f.data["name"] for f in functions or ()])


def check_tools(body: Obj) -> None:
    tools = body.objects("tools", expected="an array of objects", min_items=1, max_items=MAX_TOOLS)
    for tool in tools or ():
        kind = tool.pick("type", TOOL_TYPES)
        spec = tool.child(kind)
        tool.only(("type", kind))
        spec.name("name")
        spec.string("description")
        if kind == "function":
            spec.object("parameters")
            spec.boolean("strict")
            spec.only(("name", "description", "parameters", "strict"))
        else:
            _check_custom_format(spec)
            spec.only(("name", "description", "format"))
    _check_unique("tools", [tool.data[tool.data["type"]]["name"] for tool in tools or ()])


def _check_custom_format(spec: Obj) -> None:
    fmt = spec.object("format")
    if fmt is None:
        return
    kind = fmt.pick("type", ("text", "grammar"))
    if kind == "grammar":
        grammar = fmt.child("grammar")
        grammar.text("definition")
        grammar.pick("syntax", GRAMMAR_SYNTAXES)
        grammar.only(("definition", "syntax"))
        fmt.only(("type", "grammar"))
    else:
        fmt.only(("type",))


def _check_unique(param: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise APIError(f"Invalid '{param}': duplicate function name '{name}'.", param=param)
        seen.add(name)


def check_tool_choice(body: Obj) -> None:
    value = body.value("tool_choice")
    if value is None:
        return
    if isinstance(value, str):
        if value not in CHOICE_MODES:
            raise invalid_value("tool_choice", value, CHOICE_MODES)
        return
    if not isinstance(value, dict):
        expected = f"one of one of {quoted(CHOICE_MODES, 'or')} or object"
        raise invalid_type("tool_choice", expected, value)
    choice = Obj(value, "tool_choice")
    kind = value.get("type")
    if kind not in ("custom", "allowed_tools"):
        choice.child("function")
    kind = choice.pick("type", CHOICE_TYPES)
    if kind == "allowed_tools":
        allowed = choice.child("allowed_tools")
        allowed.pick("mode", ("auto", "required"))
        for ref in allowed.objects("tools", required=True, expected="an array of objects") or ():
            _check_reference(ref)
        allowed.only(("mode", "tools"))
    else:
        _check_reference(choice)
    choice.only(("type", kind))


def _check_reference(ref: Obj) -> None:
    """`{"type": "function", "function": {"name": ...}}` or the same for custom."""
    target = ref.child(ref.pick("type", TOOL_TYPES))
    target.text("name")
    target.only(("name",))


def check_function_call(body: Obj) -> None:
    value = body.value("function_call")
    if value is None:
        return
    if isinstance(value, str):
        if value not in FUNCTION_CALL_MODES:
            raise invalid_value("function_call", value, FUNCTION_CALL_MODES)
        return
    if not isinstance(value, dict):
        expected = f"one of one of {quoted(FUNCTION_CALL_MODES, 'or')} or object"
        raise invalid_type("function_call", expected, value)
    call = Obj(value, "function_call")
    call.text("name")
    call.only(("name",))


def check_response_format(body: Obj) -> None:
    fmt = body.object("response_format")
    if fmt is None:
        return
    kind = fmt.pick("type", RESPONSE_FORMATS)
    if kind != "json_schema":
        fmt.only(("type",))
        return
    schema = fmt.child("json_schema")
    schema.name("name")
    schema.string("description")
    schema.object("schema")
    schema.boolean("strict")
    schema.only(("name", "description", "schema", "strict"))
    fmt.only(("type", "json_schema"))


def check_tool_references(raw: dict[str, Any]) -> None:
    """Combinations: choices need their tools, and name only tools that exist."""
    tools, functions = raw.get("tools"), raw.get("functions")
    if tools is not None and functions is not None:
        raise APIError(
            "Invalid value for 'functions': 'functions' is not allowed when 'tools' are "
            "specified. Use 'tools' only.",
            param="functions",
        )
    for key, needs, declared in (
        ("tool_choice", "tools", tools),
        ("parallel_tool_calls", "tools", tools),
        ("function_call", "functions", functions),
    ):
        if raw.get(key) is not None and declared is None:
            raise APIError(
                f"Invalid value for '{key}': '{key}' is only allowed when '{needs}' are specified.",
                param=key,
            )
    declared_names = {(t["type"], t[t["type"]]["name"]) for t in tools or ()}
    declared_names |= {("function", f["name"]) for f in functions or ()}
    for kind, name, param in _references(raw):
        if (kind, name) in declared_names:
            continue
        if param is None:
            raise APIError(
                f"Invalid value for 'function_call': no function named '{name}' was specified "
                "in the 'functions' parameter.",
                param="function_call",
            )
        what = "function" if kind == "function" else "custom tool"
        raise APIError(
            f"Invalid value for '{param}': no {what} named '{name}' was specified in the "
            "'tools' parameter.",
            param=param,
        )


def _references(raw: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(kind, name, param) of each tool a choice names; param None: the API's function words."""
    refs: list[tuple[str, str, str | None]] = []
    call = raw.get("function_call")
    if isinstance(call, dict):
        refs.append(("function", call["name"], None))
    choice = raw.get("tool_choice")
    if not isinstance(choice, dict):
        return refs
    if choice["type"] == "function":
        refs.append(("function", choice["function"]["name"], None))
    elif choice["type"] == "custom":
        refs.append(("custom", choice["custom"]["name"], "tool_choice"))
    else:
        for i, ref in enumerate(choice["allowed_tools"]["tools"]):
            param = f"tool_choice.allowed_tools.tools[{i}]"
            refs.append((ref["type"], ref[ref["type"]]["name"], param))
    return refs


def tool_specs(
    tools: list[dict[str, Any]] | None, functions: list[dict[str, Any]] | None
) -> list[ToolSpec]:
    specs = [
        ToolSpec("function", f["name"], f.get("description"), f.get("parameters"))
        for f in functions or ()
    ]
    for tool in tools or ():
        spec = tool[tool["type"]]
        if tool["type"] == "function":
            specs.append(
                ToolSpec(
                    "function",
                    spec["name"],
                    spec.get("description"),
                    spec.get("parameters"),
                    strict=spec.get("strict") is True,
                )
            )
        else:
            specs.append(
                ToolSpec(
                    "custom", spec["name"], spec.get("description"), grammar=spec.get("format")
                )
            )
    return specs


_MODES: dict[str, Literal["none", "auto", "required"]] = {
    "none": "none",
    "auto": "auto",
    "required": "required",
}


def resolve_tool_choice(raw: dict[str, Any]) -> ToolChoice | None:
    """tool_choice or function_call as the engine takes it; None when no tool is declared."""
    if raw.get("tools") is None and raw.get("functions") is None:
        return None
    choice = raw.get("tool_choice")
    if choice is None:
        choice = raw.get("function_call")
    if choice is None:
        return ToolChoice("auto")
    if isinstance(choice, str):
        return ToolChoice(_MODES[choice])
    if "name" in choice:
        return ToolChoice("required", [choice["name"]])
    if choice["type"] == "allowed_tools":
        allowed = choice["allowed_tools"]
        return ToolChoice(allowed["mode"], [t[t["type"]]["name"] for t in allowed["tools"]])
    return ToolChoice("required", [choice[choice["type"]]["name"]])
