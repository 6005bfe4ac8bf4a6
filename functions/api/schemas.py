"""The document's `components.schemas`, generated from the models: JSON Schema 2020-12, as OpenAPI 3.1 reads it.

pydantic writes a `title` on every schema (the class or field name again) and `default: null` on fields a body may
leave out; neither says anything a client needs, so both are dropped.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"


def component_schemas(requests: list[type[BaseModel]], responses: list[type[BaseModel]]) -> dict[str, Any]:
    """Every model's schema by its class name, with the models they use; requests as read, responses as written."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in requests), *((model, "serialization") for model in responses)]
    _, top = models_json_schema(models, ref_template=REF_TEMPLATE)
    return {name: _tidy(schema) for name, schema in top.get("$defs", {}).items()}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A request model's schema with the models it uses written in place: for bodies whose shape others own (Call
    Automation's events), which get one component rather than one per object of theirs."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                used = definitions[node["$ref"].rsplit("/", 1)[-1]]
                return inline({**used, **{key: value for key, value in node.items() if key != "$ref"}})
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return _tidy(inline(schema))


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI parameters, each with its description and schema."""
    schema = _tidy(model.model_json_schema(ref_template=REF_TEMPLATE))
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema["properties"].items():
        field = dict(field)
        description = field.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": field}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _tidy(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _tidy(value) for key, value in node.items()
                if not (key == "title" and isinstance(value, str)) and not (key == "default" and value is None)}
    if isinstance(node, list):
        return [_tidy(value) for value in node]
    return node
