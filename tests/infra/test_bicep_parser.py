"""The Bicep reader the structural tests stand on: it must read what it claims and refuse what it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import (
    Arr, BicepSyntaxError, Call, For, Member, Obj, Ref, Scope, Str, Ternary, parse, parse_file, walk,
)

INFRA = Path(__file__).resolve().parents[2] / "infra"

SAMPLE = """
targetScope = 'subscription'

@description('Where it goes.')
@allowed([
  'eastus'
  'westus'
])
param location string = 'eastus'
param names string[]
@secure()
param secret string

var useIt = location == 'eastus' && !empty(names)
var settings = union({
  A: 'a'
  'B-key': 'x${location}y'
}, useIt ? {
  C: secret
} : {})

// a comment above the resource
resource site 'Microsoft.Web/sites@2024-04-01' = if (useIt) {
  name: 'app-${uniqueString(subscription().id)}' // trailing comment
  properties: {
    list: [for (n, i) in names: {
      name: n
      index: i
    }]
    inline: [1, 'two', true]
    key: site.listKeys().keys[0].value
    maybe: site.?properties
  }
}

module child 'modules/child.bicep' = {
  name: 'child'
  params: {
    settings: settings
  }
}

output url string = 'https://${site.properties.defaultHostName}/'
"""


def test_declarations_are_read_with_their_decorators_conditions_and_comments() -> None:
    t = parse(SAMPLE)
    assert t.target_scope == "subscription"
    location = t.params["location"]
    assert location.type == "string" and isinstance(location.default, Str) and location.default.literal == "eastus"
    assert [d.name for d in location.decorators] == ["description", "allowed"]
    assert t.params["names"].type == "string[]" and t.params["names"].default is None
    assert t.params["secret"].decorator("secure") is not None

    site = t.resource("site")
    assert (site.type, site.api_version, site.existing) == ("Microsoft.Web/sites", "2024-04-01", False)
    assert site.condition is not None and site.condition.source == "useIt"
    assert site.source.startswith("// a comment above the resource")
    assert t.module("child").path == "modules/child.bicep"
    assert isinstance(t.outputs["url"].value, Str)


def test_expressions_keep_their_structure() -> None:
    t = parse(SAMPLE)
    props = t.resource("site").obj.items["properties"]
    assert isinstance(props, Obj)
    loop = props.items["list"]
    assert isinstance(loop, For) and loop.names == ["n", "i"] and isinstance(loop.body, Obj)
    inline = props.items["inline"]
    assert isinstance(inline, Arr) and len(inline.items) == 3
    key = props.items["key"]
    assert any(isinstance(n, Call) and n.name == "listKeys" for n in walk(key))
    assert isinstance(props.items["maybe"], Member) and props.items["maybe"].safe

    name = t.resource("site").obj.items["name"]
    assert isinstance(name, Str) and name.literal is None
    assert name.parts[0] == "app-" and isinstance(name.parts[1], Call) and name.parts[1].name == "uniqueString"

    settings = t.vars["settings"]
    assert isinstance(settings, Call) and settings.name == "union"
    assert isinstance(settings.args[1], Ternary) and isinstance(settings.args[1].test, Ref)


def test_object_keys_follow_unions_ternaries_and_references() -> None:
    t = parse(SAMPLE)
    definite, possible = Scope(t).object_keys(Ref(name="settings"))
    assert definite == {"A", "B-key"}
    assert possible == {"A", "B-key", "C"}


@pytest.mark.parametrize(
    "text",
    [
        "resource a 'Microsoft.X/y@1' = {\n  resource b 'c' = {}\n}\n",  # nested resource declaration
        "type t = string\n",  # user-defined types
        "param a string = 'unclosed\n",
        "var a = {\n  k: 1\n  k: 2\n}\n",  # duplicate key
        "resource a 'Microsoft.X/y' = {}\n",  # no api version
    ],
)
def test_what_it_cannot_read_is_an_error_not_a_guess(text: str) -> None:
    with pytest.raises(BicepSyntaxError):
        parse(text)


def test_every_template_in_infra_parses() -> None:
    files = sorted(INFRA.rglob("*.bicep"))
    assert files, "no Bicep files under infra/"
    for path in files:
        template = parse_file(path)
        assert template.resources or template.modules, f"{path.name} declares nothing"
