"""The desk's sign-in in Azure, as infra/ declares it (read with tests/infra/bicep.py: no Bicep compiler runs here).

Built-in authentication with Microsoft Entra ID, on only when an app registration is named; requests without a
sign-in pass through (customers and webhooks are anonymous to the platform and bring their own credentials), so the
desk's routes check the principal themselves; and a customer's or ACS's bearer token is never read as Entra's.
"""

from __future__ import annotations

import json

from tests.infra.bicep import Ref
from tests.infra.test_templates import INFRA, literal, main, module


def test_built_in_authentication_lets_customers_through_and_signs_people_in_with_entra() -> None:
    functions = module("functions")
    auth = functions.template.resource("auth")
    assert auth.type == "Microsoft.Web/sites/config" and literal(functions, auth.obj.items["name"]) == "authsettingsV2"
    assert auth.condition is not None and "deskAuthClientId" in auth.condition.source, "off without an app registration"
    settings = auth.obj.items["properties"]
    assert literal(functions, settings.get("platform", "enabled")) is True
    assert literal(functions, settings.get("globalValidation", "requireAuthentication")) is False
    assert literal(functions, settings.get("globalValidation", "unauthenticatedClientAction")) == "AllowAnonymous"
    excluded = literal(functions, settings.get("globalValidation", "excludedPaths"))
    for path in ("/api/webchat/*", "/api/calls/*", "/runtime/webhooks/*"):
        assert path in excluded, f"{path}: its bearer tokens are not Entra's"
    assert not any(path.startswith("/api/desk") for path in excluded), "the desk is what the sign-in is for"

    entra = settings.get("identityProviders", "azureActiveDirectory")
    assert literal(functions, entra.get("enabled")) is True
    client_id = entra.get("registration", "clientId")
    assert isinstance(client_id, Ref) and client_id.name == "deskAuthClientId"
    assert "tenant().tenantId" in entra.get("registration", "openIdIssuer").source
    assert literal(functions, settings.get("httpSettings", "requireHttps")) is True


def test_the_app_registration_comes_from_one_parameter_empty_by_default() -> None:
    param = main().template.params["deskAuthClientId"]
    assert literal(main(), param.default) == ""
    description = literal(main(), param.decorator("description").args[0])
    assert "desk.agent" in description and "desk.supervisor" in description
    assert main().template.module("functions").params.items["deskAuthClientId"].source == "deskAuthClientId"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["deskAuthClientId"]["value"] == "${SWITCHBOARD_DESK_AUTH_CLIENT_ID=}"
