"""The scenario loader accepts both shipped scenarios and rejects a typo with a message naming where it is."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from shared.errors import ScenarioError
from shared.scenario import SCENARIOS_DIR, load_scenario


@pytest.mark.parametrize("name", ["utilities", "insurance"])
def test_shipped_scenarios_load(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.start_agent in scenario.agents
    for agent in scenario.agents.values():
        assert all(edge.target in scenario.agents for edge in agent.handoffs)


def test_utilities_matches_the_reference_design() -> None:
    s = load_scenario("utilities")
    assert set(s.agents) == {"UtilitiesConcierge", "BillingAgent", "OutageAgent", "ServiceAgent", "UsageAgent"}
    assert s.start_agent == "UtilitiesConcierge"
    into_outage = [e for a in s.agents.values() for e in a.handoffs if e.target == "OutageAgent"]
    assert into_outage and all(e.mode == "discrete" for e in into_outage)
    assert s.omnichannel.queue_wait_threshold_seconds == 120 and s.omnichannel.queue_depth_threshold == 50
    assert s.omnichannel.alternate_channels == ("whatsapp", "webchat")
    jordan = next(a for a in s.data["accounts"] if a["name"] == "Jordan Lee")
    assert (jordan["phone"], jordan["account_number"], jordan["balance"]) == ("+15555550100", "100200300", 127.45)


def _broken_copy(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(SCENARIOS_DIR / "insurance", folder)
    spec = yaml.safe_load((folder / "scenario.yaml").read_text())
    edit(spec)
    (folder / "scenario.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["agents"]["ClaimsAgent"].update(max_tokens=2040), r"agents.ClaimsAgent: unknown key\(s\) \['max_tokens'\]"),
        (lambda s: s["agents"]["ClaimsAgent"]["handoffs"].append({"to": "Nobody", "when": "x"}), "unknown agent 'Nobody'"),
        (lambda s: s["agents"]["PolicyAgent"]["tools"].append("teleport"), r"unknown tool\(s\) \['teleport'\]"),
        (lambda s: s["agents"]["PolicyAgent"]["intents"].append("claims"), "already handled by ClaimsAgent"),
        (lambda s: s["slots"]["policy_number"].update(pattern="(unclosed"), "not a valid regex"),
        (lambda s: s.update(start_agent="Ghost"), "start_agent 'Ghost'"),
        (lambda s: s["tools"].update(teleport={"description": "x"}), "tools.teleport: tools.py has no function"),
        (lambda s: s["phrases"].pop("fallback"), r"phrases is missing \['fallback'\]"),
        (lambda s: s["omnichannel"].update(queue_wait=5), r"omnichannel: unknown key\(s\) \['queue_wait'\]"),
        (lambda s: s["whatsapp"].update(templates={}), r"whatsapp: unknown key\(s\) \['templates'\]"),
        (lambda s: s["whatsapp"]["template"].pop("language"), r"whatsapp.template: missing key\(s\) \['language'\]"),
        (lambda s: s["whatsapp"]["template"].update(name="Claim Update"), "template names are lowercase"),
        (lambda s: s["whatsapp"]["template"]["parameters"].append({"name": "p", "text": "{policy}", "fallback": "x"}),
         r"\['policy'\] are neither slots nor \{company\}"),
        (lambda s: s["whatsapp"]["template"]["parameters"][0].pop("fallback"), "needs a fallback"),
    ],
)
def test_a_broken_scenario_names_the_problem(tmp_path: Path, edit, message: str) -> None:
    folder = _broken_copy(tmp_path, edit)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(str(folder))


def test_a_missing_scenario_says_so(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="scenario.yaml is missing"):
        load_scenario(str(tmp_path / "nope"))
