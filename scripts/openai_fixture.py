"""Copy schemas of the official OpenAPI document into a test fixture.

    python scripts/openai_fixture.py OPENAPI.yaml OUT.json Schema [Schema ...]

Writes every schema the named ones reach, under `$defs`, with `nullable: true`
rewritten as a union with null (the document is OpenAPI 3.1 but still uses it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

PREFIX = "#/components/schemas/"


def rewrite(node: Any, found: set[str]) -> Any:
    if isinstance(node, list):
        return [rewrite(item, found) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: rewrite(value, found) for key, value in node.items() if key != "nullable"}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(PREFIX):
        found.add(ref[len(PREFIX) :])
        out["$ref"] = "#/$defs/" + ref[len(PREFIX) :]
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def main(spec: str, out: str, roots: list[str]) -> None:
    document = yaml.safe_load(Path(spec).read_text())
    schemas = document["components"]["schemas"]
    defs: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in defs:
            continue
        found: set[str] = set()
        defs[name] = rewrite(schemas[name], found)
        todo += sorted(found - defs.keys())
    info = document["info"]
    fixture = {
        "source": f"openai/openai-openapi (info.version {info['version']}); "
        "nullable rewritten as anyOf null",
        "$defs": dict(sorted(defs.items())),
    }
    Path(out).write_text(json.dumps(fixture, indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
