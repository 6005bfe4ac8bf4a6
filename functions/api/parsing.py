"""A request's body or query as one of the API's models, or InvalidInput (a 400) naming each field that is wrong
and what was expected: `text: String should have at least 1 character`, `set.waiting: Input should be greater than
or equal to 0`, `unknown field(s): mood`."""

from __future__ import annotations

from typing import TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from functions.http import json_body
from shared.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)

#: pydantic's words for "not an object" name the model class, which means nothing to a client.
_NOT_AN_OBJECT = {"model_type", "model_attributes_type", "dict_type"}


def parse_body(req: func.HttpRequest, model: type[M], *, allow_empty: bool = False) -> M:
    """The JSON body as `model` (an empty body reads as `{}` when `allow_empty`)."""
    try:
        return model.model_validate(json_body(req, allow_empty=allow_empty))
    except ValidationError as exc:
        raise InvalidInput(describe(exc, "field")) from None


def parse_query(req: func.HttpRequest, model: type[M], *, ignore: tuple[str, ...] = ()) -> M:
    """The query parameters as `model`; an empty value counts as absent, `ignore` names others the route lets by."""
    params = {name: value for name, value in req.params.items() if value != "" and name not in ignore}
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise InvalidInput(describe(exc, "query parameter")) from None


def describe(exc: ValidationError, what: str) -> str:
    """One line for every error: the field's path, then what it should be; unknown names together, per object."""
    unknown: dict[str, list[str]] = {}
    problems = []
    for error in exc.errors(include_url=False):
        location = error["loc"]
        if error["type"] == "extra_forbidden":
            unknown.setdefault(_path(location[:-1]), []).append(str(location[-1]))
            continue
        message = "must be an object" if error["type"] in _NOT_AN_OBJECT else error["msg"]
        problems.append(f"{_path(location)}: {message}" if location else f"request body {message}")
    for parent, names in unknown.items():
        problems.insert(0, f"{parent + ': ' if parent else ''}unknown {what}(s): {', '.join(sorted(names))}")
    return "; ".join(problems)


def _path(location: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
