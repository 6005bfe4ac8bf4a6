"""The scenario loader accepts both shipped scenarios and rejects a broken file with a message naming the file, the
path inside it and what was expected (shared/scenario_schema.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from shared.errors import ScenarioError
from shared.scenario import SCENARIOS_DIR, DeskSpec, VerificationSpec, load_scenario

MINI = Path(__file__).resolve().parents[1] / "policies" / "fixtures" / "mini"


@pytest.mark.parametrize("name", ["utilities", "insurance", str(MINI)])
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
    assert s.tools["get_balance"].requires[0].any_of == ("account_number", "phone_number")
    assert s.tools["energy_tips"].parameters == {} and s.tools["get_balance"].parameters["phone_number"] == {
        "slot": "phone_number"}
    assert s.slots["service_request"].choices["move"][:2] == ("move", "moving")
    assert s.intents["billing"].keywords["bill"] == 3.0
    assert s.desk.safety_words[0] == "gas smell" and s.verification.knowledge[0].digits is True
    jordan = next(a for a in s.data["accounts"] if a["name"] == "Jordan Lee")
    assert (jordan["phone"], jordan["account_number"], jordan["balance"]) == ("+15555550100", "100200300", 127.45)


def _copy(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(SCENARIOS_DIR / "insurance", folder)
    spec = yaml.safe_load((folder / "scenario.yaml").read_text())
    edit(spec)
    (folder / "scenario.yaml").write_text(yaml.safe_dump(spec))
    return folder


def _problem(tmp_path: Path, edit) -> str:
    folder = _copy(tmp_path, edit)
    with pytest.raises(ScenarioError) as failure:
        load_scenario(str(folder))
    return str(failure.value).removeprefix(f"{folder / 'scenario.yaml'}: ")


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        # Unknown keys, with the keys allowed there
        (lambda s: s["agents"]["ClaimsAgent"].update(max_tokens=2040),
         "agents.ClaimsAgent: unknown key(s) ['max_tokens']; allowed: ['greeting', 'handoffs', 'instructions', "
         "'intents', 'slots', 'title', 'tools']"),
        (lambda s: s["omnichannel"].update(queue_wait=5), "omnichannel: unknown key(s) ['queue_wait']"),
        (lambda s: s["whatsapp"].update(templates={}), "whatsapp: unknown key(s) ['templates']"),
        (lambda s: s.update(voices={}), "(top level): unknown key(s) ['voices']"),
        # Wrong types and values, with what was there
        (lambda s: s["agents"]["PolicyAgent"]["tools"].append(5),
         "agents.PolicyAgent.tools[1]: expected string, got 5"),
        (lambda s: s["desk"].update(failed_attempts="3"), "desk.failed_attempts: expected integer, got '3'"),
        (lambda s: s["desk"].update(default_handle_seconds=True),
         "desk.default_handle_seconds: expected number, got true"),
        (lambda s: s["verification"].update(code_length=12),
         "verification.code_length: expected less than or equal to 10, got 12"),
        (lambda s: s["verification"].update(methods=["code", "sms"]),
         "verification.methods[1]: expected 'code' or 'knowledge', got 'sms'"),
        (lambda s: s["slots"]["incident_date"].update(kind="date"),
         "slots.incident_date.kind: expected 'text', 'digits', 'phone' or 'title', got 'date'"),
        (lambda s: s["tools"]["claim_status"].update(verification="admin"),
         "tools.claim_status.verification: expected 'unverified', 'identified' or 'verified', got 'admin'"),
        (lambda s: s["agents"]["ClaimsAgent"]["handoffs"][0].update(mode="silent"),
         "agents.ClaimsAgent.handoffs[0].mode: expected 'announced' or 'discrete', got 'silent'"),
        (lambda s: s["slots"]["incident"]["choices"].update(fire=[]),
         "slots.incident.choices.fire: List should have at least 1 item after validation, not 0, got a list of 0"),
        (lambda s: s["agents"]["PolicyAgent"].update(greeting="  "),
         "agents.PolicyAgent.greeting: expected some words"),
        (lambda s: s.update(escalation=15555550198),
         "escalation: expected a quoted E.164 phone number like '+15555550199', got 15555550198"),
        (lambda s: s["slots"]["policy_number"].update(pattern="(unclosed"),
         "slots.policy_number.pattern: not a valid regex: missing ), unterminated subpattern at position 0"),
        (lambda s: s["phrases"].pop("fallback"), "phrases: missing the required phrase(s) ['fallback']"),
        (lambda s: s["whatsapp"]["template"].pop("language"), "whatsapp.template.language: missing (required)"),
        (lambda s: s["whatsapp"]["template"].update(name="Claim Update"),
         "whatsapp.template.name: WhatsApp template names are lowercase letters, digits and _, not 'Claim Update'"),
        (lambda s: s["verification"].update(knowledge=[]),
         "verification: the knowledge method needs questions under knowledge"),
        # Names that point nowhere
        (lambda s: s["agents"]["ClaimsAgent"]["handoffs"].append({"to": "Nobody", "when": "x"}),
         "agents.ClaimsAgent.handoffs[1].to: no agent named 'Nobody'; the agents are ['ClaimsAgent', "
         "'InsuranceConcierge', 'PolicyAgent']"),
        (lambda s: s["agents"]["PolicyAgent"]["tools"].append("teleport"),
         "agents.PolicyAgent.tools[1]: no tool named 'teleport'; the tools are ['claim_status', 'file_claim', "
         "'policy_details']"),
        (lambda s: s["agents"]["PolicyAgent"]["intents"].append("claims"),
         "agents.PolicyAgent.intents[1]: 'claims' is already handled by ClaimsAgent"),
        (lambda s: s.update(start_agent="Ghost"), "start_agent: no agent named 'Ghost'"),
        (lambda s: s["tools"]["file_claim"]["parameters"]["incident"].update(slot="accident"),
         "tools.file_claim.parameters.incident.slot: no slot named 'accident'"),
        (lambda s: s["tools"]["file_claim"]["requires"][1].update(any_of=["incident", "cause"]),
         "tools.file_claim.requires[1].any_of[1]: 'cause' is not a parameter of the tool"),
        (lambda s: s["verification"].update(account_slots=["policy"]),
         "verification.account_slots[0]: no slot named 'policy'"),
        (lambda s: s["whatsapp"]["template"]["parameters"].append({"name": "p", "text": "{policy}", "fallback": "x"}),
         "whatsapp.template.parameters[2].text: ['policy'] are neither slots nor {company}"),
        (lambda s: s["whatsapp"]["template"]["parameters"][0].pop("fallback"),
         "whatsapp.template.parameters[0]: names a slot, so it needs a fallback for customers without it"),
        # What tools.py must match
        (lambda s: s["tools"].update(teleport={"description": "x"}),
         "tools.teleport: tools.py has no function for this tool in TOOLS"),
    ],
)
def test_a_broken_scenario_names_the_file_the_path_and_what_was_expected(tmp_path: Path, edit, says: str) -> None:
    assert _problem(tmp_path, edit).startswith(says)


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    def two_typos(spec: dict) -> None:
        spec["slots"]["incident_date"]["kind"] = "date"
        spec["desk"]["failed_attempts"] = 0

    lines = _problem(tmp_path, two_typos).splitlines()
    assert lines[0] == "2 problems"
    assert [line.split(": ", 2)[1] for line in lines[1:]] == ["slots.incident_date.kind", "desk.failed_attempts"]


def test_phrases_stay_open_and_empty_sections_take_their_defaults(tmp_path: Path) -> None:
    # Any line the product says may be worded by a scenario; a key left empty in YAML means its defaults.
    def edit(spec: dict) -> None:
        spec["phrases"]["escalate_queued"] = "You're number {position} for {company}."
        spec["desk"] = None
        spec["verification"] = None
        for tool in spec["tools"].values():
            tool.pop("verification")

    scenario = load_scenario(str(_copy(tmp_path, edit)))
    assert scenario.phrase("escalate_queued", position=2) == "You're number 2 for Lakeside Mutual."
    assert scenario.desk == DeskSpec() and scenario.verification == VerificationSpec()


def test_a_missing_scenario_says_so(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="scenario.yaml is missing"):
        load_scenario(str(tmp_path / "nope"))
