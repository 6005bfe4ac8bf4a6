"""Reading a body the emulator produced through an SDK model, strictly: every field it has must be one the model
knows (or one the docs' samples show beyond the model, named by the caller), and writing the model back must give
the same values. A field the emulator invents, misspells or shapes differently from the SDK fails here.

Both kinds of generated model are handled: msrest-style (`_attribute_map`, Call Automation and SMS) and the newer
`_model_base.Model` (Advanced Messaging), whose fields carry their wire names.
"""

from __future__ import annotations

from typing import Any


def wire_names(model: type) -> set[str]:
    if hasattr(model, "_attribute_map"):
        return {spec["key"].split(".")[0] for spec in model._attribute_map.values()}
    return {field._rest_name for field in vars(model).values() if hasattr(field, "_rest_name")}


def read_back(model: type, body: dict[str, Any], *, beyond: frozenset[str] = frozenset()) -> Any:
    """`body` as `model`; fails naming the fields the model does not have or reads differently."""
    unknown = set(body) - wire_names(model) - beyond
    assert not unknown, f"{model.__name__} has no field(s) {sorted(unknown)}: the emulator sent {body}"
    if hasattr(model, "_attribute_map"):
        parsed = model.deserialize(body)
        written = parsed.serialize(keep_readonly=True)
    else:
        parsed = model(body)
        written = parsed.as_dict()
    differ = {key: (body.get(key), value) for key, value in written.items() if body.get(key) != value}
    assert not differ, f"{model.__name__} reads these fields differently (sent, read): {differ}"
    return parsed
