"""local/project.py: what the host reads from the project folder (local.settings.json, host.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from local.project import SKIP_LOCAL_SETTINGS, load_local_settings, read_route_prefix
from shared.settings import SettingsError


def test_local_settings_fill_the_environment_without_overriding(tmp_path: Path, monkeypatch):
    values = {"SB_TEST_NEW": "from-file", "SB_TEST_SET": "from-file", "SB_TEST_NUM": 5}
    (tmp_path / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    monkeypatch.delenv(SKIP_LOCAL_SETTINGS, raising=False)
    monkeypatch.setenv("SB_TEST_SET", "from-shell")
    monkeypatch.delenv("SB_TEST_NEW", raising=False)
    monkeypatch.delenv("SB_TEST_NUM", raising=False)

    added = load_local_settings(tmp_path)

    assert sorted(added) == ["SB_TEST_NEW", "SB_TEST_NUM"]
    assert (os.environ["SB_TEST_NEW"], os.environ["SB_TEST_SET"], os.environ["SB_TEST_NUM"]) == (
        "from-file",
        "from-shell",
        "5",
    )
    for key in added:
        monkeypatch.delenv(key)


def test_local_settings_can_be_skipped(tmp_path: Path, monkeypatch):
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"SB_TEST_NEW": "from-file"}}))
    monkeypatch.delenv("SB_TEST_NEW", raising=False)
    monkeypatch.setenv(SKIP_LOCAL_SETTINGS, "1")

    assert load_local_settings(tmp_path) == []
    assert "SB_TEST_NEW" not in os.environ

    monkeypatch.setenv(SKIP_LOCAL_SETTINGS, "yes please")
    with pytest.raises(SettingsError, match=SKIP_LOCAL_SETTINGS):
        load_local_settings(tmp_path)


def test_route_prefix_comes_from_host_json(tmp_path: Path):
    assert read_route_prefix(tmp_path) == "api"
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}}))
    assert read_route_prefix(tmp_path) == ""
