"""The API's own description: GET /api/openapi.json."""

from __future__ import annotations

import azure.functions as func

from functions.http import json_response

bp = func.Blueprint()


@bp.route(route="openapi.json", methods=["GET"])
async def openapi_json(req: func.HttpRequest) -> func.HttpResponse:
    from functions.openapi import openapi_document  # built on the first request, not while the host loads the app

    return json_response(openapi_document())
