"""The small builders the parts of the OpenAPI document use (functions/openapi.py and its openapi_*.py pieces)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": json_content(ref("Error"))}


def model_content(model: type) -> dict[str, Any]:
    """A JSON body whose schema is one of the API's models (functions/api/), by its component name."""
    return json_content(ref(model.__name__))
