"""Write chatd's OpenAPI document from the official OpenAI one.

    python scripts/openapi.py path/to/openai/openapi.yaml [src/chatd/api/openapi.json]

Keeps the operations chatd serves and every component they reference, transitively;
rewrites OpenAPI 3.0's `nullable: true` (still written ~111 times in a 3.1 document) into
a union with null, so that JSON Schema validators accept the nulls real responses carry;
adds chatd's sampling extensions to the request and its error body to every operation.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent.parent / "src" / "chatd" / "api" / "openapi.json"

SERVED = {
    "/chat/completions": ("get", "post"),
    "/chat/completions/{completion_id}": ("get", "post", "delete"),
    "/chat/completions/{completion_id}/messages": ("get",),
    "/models": ("get",),
    "/models/{model}": ("get",),
    "/responses": ("post",),
    "/responses/{response_id}": ("get", "delete"),
    "/responses/{response_id}/cancel": ("post",),
    "/responses/{response_id}/input_items": ("get",),
}

EXTENSIONS: dict[str, Any] = {
    "top_k": {
        "type": ["integer", "null"],
        "minimum": 0,
        "description": "chatd extension: sample from the k most likely tokens (0 = off).",
    },
    "min_p": {
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": 1,
        "description": "chatd extension: drop tokens below min_p times the top probability.",
    },
    "repetition_penalty": {
        "type": ["number", "null"],
        "exclusiveMinimum": 0,
        "maximum": 2,
        "description": "chatd extension: llama.cpp's repetition penalty (1 = off).",
    },
    "ignore_eos": {
        "type": ["boolean", "null"],
        "description": "chatd extension: generate until max_tokens, past end of text.",
    },
}

# Where real traffic differs from the schema, what real clients accept: (schema, property,
# why). Each such property becomes nullable.
REAL_API_NULLS = [
    ("ChatCompletionList", "first_id", "an empty page has no first or last id: null"),
    ("ChatCompletionList", "last_id", "an empty page has no first or last id: null"),
    ("ChatCompletionMessageList", "first_id", "an empty page has no first or last id: null"),
    ("ChatCompletionMessageList", "last_id", "an empty page has no first or last id: null"),
]

ROLES = ["developer", "system", "user", "assistant", "tool", "function"]

ERROR = {
    "description": "An error: the request is invalid, unauthorised, too large, or the "
    "model or completion is unknown.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}

# Keys that only document: dropped to keep the served file small. And `discriminator`:
# the document's (all without a mapping) name `type` as the discriminator of unions whose
# `type` values ("message", "function_call", ...) are not their members' component names,
# which is what a discriminator without a mapping means; tools that read it (schemathesis)
# then reject the API's real answers. The `oneOf` alone validates them.
DROPPED = ("x-oaiMeta", "x-stainless-skip", "examples", "example", "discriminator")


def strip(node: Any, named: bool = False) -> Any:
    """Without DROPPED keys; `named`: node maps names (properties), which are kept."""
    if isinstance(node, dict):
        return {
            key: strip(value, key == "properties" and not named)
            for key, value in node.items()
            if named or key not in DROPPED
        }
    if isinstance(node, list):
        return [strip(item) for item in node]
    return node


def unnull(node: Any) -> Any:
    """`{..., nullable: true}` -> `{anyOf: [{...}, {type: null}]}`, everywhere."""
    if isinstance(node, list):
        return [unnull(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: unnull(value) for key, value in node.items()}
    if node.pop("nullable", False) is not True:
        return node
    description = node.pop("description", None)
    union: dict[str, Any] = {"anyOf": [node, {"type": "null"}]}
    if description is not None:
        union["description"] = description
    return union


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(refs(item) for item in node)) if node else set()
    return set()


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def components_of(document: dict[str, Any], roots: Any) -> dict[str, dict[str, Any]]:
    """Every component `roots` reaches, by section (schemas, parameters, ...)."""
    seen: set[str] = set()
    todo = refs(roots)
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        todo |= refs(resolve(document, ref)) - seen
    components: dict[str, dict[str, Any]] = {}
    for ref in sorted(seen):
        _, _, section, name = ref.split("/", 3)
        components.setdefault(section, {})[name] = resolve(document, ref)
    return components


def add_extensions(request: dict[str, Any]) -> None:
    """The extensions go into the allOf branch that holds `messages`."""
    for branch in request["allOf"]:
        properties = branch.get("properties", {})
        if "messages" in properties:
            properties.update(EXTENSIONS)
            return
    raise SystemExit("CreateChatCompletionRequest has no branch with `messages`")


def real_api(schemas: dict[str, Any]) -> None:
    """Where the real API's traffic (and its own examples) differ from the schema."""
    for name, prop, why in REAL_API_NULLS:
        schema = schemas[name]["properties"][prop]
        schema["nullable"] = True
        schema["description"] = f"{schema.get('description', '').strip()} (chatd: {why})"
    # A listed message is a stored one, of any role (the operation's own example lists a
    # user message), but the schema types every item as an assistant's response message.
    message = copy.deepcopy(schemas["ChatCompletionResponseMessage"])
    message["properties"]["role"]["enum"] = ROLES
    message["properties"]["role"]["description"] = "The role of the message's author."
    message["properties"]["role"].pop("x-stainless-const", None)
    items = schemas["ChatCompletionMessageList"]["properties"]["data"]["items"]
    items["allOf"] = [message if "$ref" in part else part for part in items["allOf"]]


def build(official: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, methods in SERVED.items():
        item = official["paths"][path]
        operations = {method: strip(item[method]) for method in methods}
        for operation in operations.values():
            operation["responses"]["default"] = ERROR
            for status, answer in operation["responses"].items():
                # the Responses operations' 404s name the bare `Error` object, but the API
                # answers every error inside {"error": ...}, as the recorded errors show
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if schema == {"$ref": "#/components/schemas/Error"}:
                    operation["responses"][status] = ERROR
            for parameter in operation.get("parameters", []):
                # The SDK's encoding, and chatd's: metadata[key]=value.
                if parameter.get("in") == "query" and parameter["name"] == "metadata":
                    parameter.update(style="deepObject", explode=True)
        paths[path] = operations
    # `GET /responses/{id}?stream=true` streams the response's events, as the real API does,
    # but the operation documents only JSON
    stored = paths["/responses/{response_id}"]["get"]["responses"]["200"]["content"]
    stored.setdefault(
        "text/event-stream",
        paths["/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"],
    )
    components = components_of(official, paths)
    add_extensions(components["schemas"]["CreateChatCompletionRequest"])
    real_api(components["schemas"])
    schemes = official["components"]["securitySchemes"]
    components["securitySchemes"] = {"ApiKeyAuth": schemes["ApiKeyAuth"]}
    info = official["info"]
    return {
        "openapi": official["openapi"],
        "info": {
            "title": "chatd",
            "description": "The OpenAI Chat Completions and Responses APIs as chatd serves "
            f"them: the official schemas (OpenAI API {info['version']}) of the operations "
            "below, plus chatd's sampling extensions (top_k, min_p, repetition_penalty, "
            "ignore_eos).",
            "version": info["version"],
            "license": info["license"],
        },
        "servers": [{"url": "/v1"}],
        "security": [{"ApiKeyAuth": []}],
        "paths": paths,
        "components": unnull(strip(components)),
    }


def main(argv: list[str]) -> None:
    if not 1 <= len(argv) <= 2:
        raise SystemExit(__doc__)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    official = yaml.load(Path(argv[0]).read_text(), Loader=loader)
    out = Path(argv[1]) if len(argv) == 2 else OUT
    document = unnull(build(official))
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(
        f"{out}: {len(document['paths'])} paths, {len(document['components']['schemas'])} schemas"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
