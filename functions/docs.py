"""The API's own description: GET /api/openapi.json."""

from __future__ import annotations

import azure.functions as func

from functions.http import json_response
from functions.openapi import openapi_document

bp = func.Blueprint()


@bp.route(route="openapi.json", methods=["GET"])
async def openapi_json(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi_document())
