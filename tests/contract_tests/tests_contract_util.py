"""Shared by the contract tests: validators for the shipped schema files."""

from __future__ import annotations

import functools
import json

import jsonschema

from runtime.contract import shipped_schema_dir


@functools.cache
def load_validator(kind: str) -> jsonschema.Draft202012Validator:
    """A validator for the *shipped* file (not the live model), with date-time checked."""
    schema = json.loads((shipped_schema_dir() / f"{kind}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
