"""The Foundry project client and the OpenAI client it hands out, built from settings.

In Azure the app signs in as its managed identity (DefaultAzureCredential with AZURE_CLIENT_ID), for the
https://ai.azure.com scope the project takes. A loopback endpoint (http://127.0.0.1/...) is a local stand-in for
the project (the tests' server, bench/foundry.py): it gets a fixed token over plain HTTP, since there is nobody to
sign in to and azure-core refuses bearer tokens over HTTP otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
from azure.ai.projects.aio import AIProjectClient
from azure.core.credentials import AccessToken
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from shared.settings import Settings, SettingsError

SCOPE = "https://ai.azure.com/.default"
MAX_RETRIES = 2  # the openai SDK's own retries (with backoff) on timeouts, connection errors, 429 and 5xx
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class LocalToken:
    """The token a loopback stand-in for Foundry receives; it proves nothing and is never sent off the machine."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local", int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> LocalToken:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


class _LocalAuthorization(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Sends the local token over plain HTTP, which azure-core's bearer-token policy refuses to do."""

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        request.http_request.headers["Authorization"] = "Bearer local"


@dataclass
class Foundry:
    """The project (agents) and its OpenAI client (conversations, responses); `close()` releases both."""

    project: AIProjectClient
    openai: openai.AsyncOpenAI
    credential: Any

    async def close(self) -> None:
        await self.openai.close()
        await self.project.close()
        await self.credential.close()


def is_loopback(endpoint: str) -> bool:
    return (urlsplit(endpoint).hostname or "") in LOOPBACK


def build_foundry(settings: Settings, *, max_retries: int = MAX_RETRIES) -> Foundry:
    endpoint = settings.azure_ai_project_endpoint
    if not endpoint:
        raise SettingsError("the Foundry policy needs AZURE_AI_PROJECT_ENDPOINT")
    kwargs: dict[str, Any] = {}
    if is_loopback(endpoint):
        credential: Any = LocalToken()
        kwargs["authentication_policy"] = _LocalAuthorization()
        openai_auth: dict[str, Any] = {"api_key": "local"}
    else:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)
        openai_auth = {}  # the project client's bearer-token provider for SCOPE
    project = AIProjectClient(endpoint=endpoint, credential=credential, **kwargs)
    client = project.get_openai_client(timeout=settings.llm_timeout_seconds, max_retries=max_retries, **openai_auth)
    return Foundry(project, client, credential)
