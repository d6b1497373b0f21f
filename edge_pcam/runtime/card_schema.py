"""The model card's JSON Schema (model_card.schema.json beside this file) and a validator for it.

Why not the `jsonschema` package: it brings attrs, referencing,
jsonschema-specifications and rpds-py (a Rust extension, about 2 MB
installed with its wheels) to a device install that is otherwise numpy,
Pillow, h5py, tifffile, typer and rich. The card's schema uses a small part
of JSON Schema 2020-12, and this module implements exactly that part:
type, enum, const, minimum, maximum, exclusiveMinimum, minLength, pattern,
properties, required, additionalProperties, propertyNames, items, minItems,
maxItems, anyOf, allOf, not, if/then/else and local $ref into $defs
(annotations such as description are ignored). A schema that uses any other
keyword is refused when loaded, so the file cannot silently rely on a rule
that is not checked. The workstation tests validate the schema file against
the 2020-12 meta-schema and compare this validator's verdicts with the
`jsonschema` package's on good and bad cards.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("model_card.schema.json")
ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples", "default"}
ASSERTIONS = {"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "minLength", "pattern",
              "properties", "required", "additionalProperties", "propertyNames", "items", "minItems", "maxItems",
              "anyOf", "allOf", "not", "if", "then", "else", "$ref", "$defs"}


class SchemaError(ValueError):
    """The schema itself uses a keyword this validator does not implement, or a $ref it cannot resolve."""


class CardSchema:
    """A JSON Schema of the supported subset; `errors(instance)` lists what breaks it."""

    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        _check_keywords(schema, "#")

    def errors(self, instance: Any) -> list[str]:
        """Every violation, as 'path: what is wrong' (path '(card)' for the top level)."""
        out: list[str] = []
        self._check(self.schema, instance, "", out)
        return out

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise SchemaError(f"only local $ref are supported, got {ref}")
        node: Any = self.schema
        for part in ref[2:].split("/"):
            if not isinstance(node, dict) or part not in node:
                raise SchemaError(f"$ref {ref} does not resolve")
            node = node[part]
        return node

    def _check(self, schema: Any, value: Any, path: str, out: list[str]) -> None:
        if schema is True:
            return
        if schema is False:
            out.append(f"{path or '(card)'}: not allowed here")
            return
        where = path or "(card)"
        if "$ref" in schema:
            self._check(self._resolve(schema["$ref"]), value, path, out)
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(value, t) for t in types):
                out.append(f"{where}: {_show(value)} is not of type {' or '.join(types)}")
                return
        if "enum" in schema and not any(_json_equal(value, v) for v in schema["enum"]):
            out.append(f"{where}: {_show(value)} is not one of {', '.join(_show(v) for v in schema['enum'])}")
        if "const" in schema and not _json_equal(value, schema["const"]):
            out.append(f"{where}: {_show(value)} is not {_show(schema['const'])}")
        if _is_type(value, "number"):
            self._check_number(schema, value, where, out)
        if isinstance(value, str):
            if len(value) < schema.get("minLength", 0):
                out.append(f"{where}: shorter than {schema['minLength']} characters")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                out.append(f"{where}: {_show(value)} does not match {schema['pattern']}")
        if isinstance(value, dict):
            self._check_object(schema, value, path, out)
        if isinstance(value, list):
            if len(value) < schema.get("minItems", 0):
                out.append(f"{where}: fewer than {schema['minItems']} items")
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                out.append(f"{where}: more than {schema['maxItems']} items")
            if "items" in schema:
                for i, item in enumerate(value):
                    self._check(schema["items"], item, f"{path}[{i}]", out)
        for sub in schema.get("allOf", []):
            self._check(sub, value, path, out)
        if "anyOf" in schema and not any(not self.errors_of(sub, value, path) for sub in schema["anyOf"]):
            reasons = "; ".join(self.errors_of(schema["anyOf"][-1], value, path)[:1])
            out.append(f"{where}: matches none of the allowed forms ({reasons})")
        if "not" in schema and not self.errors_of(schema["not"], value, path):
            out.append(f"{where}: {_show(value)} is not allowed here")
        if "if" in schema:
            branch = "then" if not self.errors_of(schema["if"], value, path) else "else"
            if branch in schema:
                self._check(schema[branch], value, path, out)

    def errors_of(self, schema: Any, value: Any, path: str) -> list[str]:
        found: list[str] = []
        self._check(schema, value, path, found)
        return found

    @staticmethod
    def _check_number(schema: dict[str, Any], value: float, where: str, out: list[str]) -> None:
        if isinstance(value, float) and math.isnan(value):
            if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum")):
                out.append(f"{where}: NaN is not a number in range")
            return
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where}: {_show(value)} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{where}: {_show(value)} is above the maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{where}: {_show(value)} must be greater than {schema['exclusiveMinimum']}")

    def _check_object(self, schema: dict[str, Any], value: dict[str, Any], path: str, out: list[str]) -> None:
        where = path or "(card)"
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            out.append(f"{where}: lacks {', '.join(missing)}")
        props = schema.get("properties", {})
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "propertyNames" in schema:
                self._check(schema["propertyNames"], key, child, out)
            if key in props:
                self._check(props[key], item, child, out)
            elif "additionalProperties" in schema:
                extra = schema["additionalProperties"]
                if extra is False:
                    out.append(f"{where}: unknown key '{key}'")
                else:
                    self._check(extra, item, child, out)


def _check_keywords(schema: Any, where: str) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"{where}: a schema must be an object or a boolean")
    unknown = set(schema) - ANNOTATIONS - ASSERTIONS
    if unknown:
        raise SchemaError(f"{where}: keyword(s) {', '.join(sorted(unknown))} not implemented by this validator")
    for key in ("properties", "$defs"):
        for name, sub in schema.get(key, {}).items():
            _check_keywords(sub, f"{where}/{key}/{name}")
    for key in ("additionalProperties", "propertyNames", "items", "not", "if", "then", "else"):
        if key in schema:
            _check_keywords(schema[key], f"{where}/{key}")
    for key in ("anyOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            _check_keywords(sub, f"{where}/{key}/{i}")


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, (list, tuple))
    if isinstance(value, bool):
        return False
    if name == "number":
        return isinstance(value, (int, float))
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    raise SchemaError(f"unknown type '{name}'")


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


@functools.lru_cache(maxsize=1)
def card_schema() -> CardSchema:
    """The packaged model-card schema, loaded once."""
    return CardSchema(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
