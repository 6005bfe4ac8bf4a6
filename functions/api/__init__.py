"""The HTTP API's bodies as pydantic models: one source for checking requests and for /api/openapi.json.

Each module holds one concern's models (webchat, desk, ops, handoff); `fields` the field types they share, `parsing`
the turn of a request into a model (or a 400 naming the field), `schemas` the JSON Schema the document is built from.
Importing any of them loads pydantic, which the host need not pay for while it loads the app: handlers import them
inside the function (tests/shared/test_settings.py checks `import function_app` stays free of pydantic).
"""
