"""The small builders both parts of the OpenAPI document use (functions/openapi.py, functions/openapi_desk.py)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": json_content(ref("Error"))}
