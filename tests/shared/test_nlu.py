"""The offline policy understands ordinary paraphrase, not only the scenario's example sentences."""

import pytest

from shared.policies.nlu import classifier_for, small_talk
from shared.scenario import load_scenario

UTILITIES = [
    # outage: none of these is an example sentence in scenario.yaml
    ("no electricity at my house", "outage"),
    ("lights are out", "outage"),
    ("the power's down on my street", "outage"),
    ("my lights went off twenty minutes ago", "outage"),
    ("we've had no power since this morning", "outage"),
    ("everything went dark", "outage"),
    ("there's a blackout in my neighborhood", "outage"),
    ("when will my electricity be back", "outage"),
    ("my power has been off for hours", "outage"),
    # billing
    ("I have a question about my bill", "billing"),
    ("how much do I owe you guys", "billing"),
    ("why is my statement so high", "billing"),
    ("I think I was overcharged", "billing"),
    ("I'd like to make a payment", "billing"),
    ("what's my balance", "billing"),
    # service
    ("I'm moving to a new apartment next month", "service"),
    ("can someone come fix my meter", "service"),
    ("I need to shut off service when I leave", "service"),
    ("please send a technician", "service"),
    # usage
    ("how much electricity did I use last month", "usage"),
    ("show me my energy consumption", "usage"),
    ("how many kWh am I using", "usage"),
]


@pytest.mark.parametrize(("text", "intent"), UTILITIES)
def test_utilities_paraphrase_reaches_the_right_intent(text: str, intent: str) -> None:
    match = classifier_for(load_scenario("utilities")).classify(text)
    assert match is not None and match.intent == intent, f"{text!r} -> {match}"


@pytest.mark.parametrize("text", ["it's 100200300", "yes", "ok", "555 555 0100", "Tuesday works"])
def test_answers_without_an_intent_are_not_routed(text: str) -> None:
    assert classifier_for(load_scenario("utilities")).classify(text) is None


@pytest.mark.parametrize(
    ("text", "intent"),
    [("I was rear-ended on the highway", "claims"), ("what's my deductible", "policy"), ("my basement flooded", "claims")],
)
def test_the_classifier_is_built_from_any_scenario(text: str, intent: str) -> None:
    match = classifier_for(load_scenario("insurance")).classify(text)
    assert match is not None and match.intent == intent


def test_small_talk() -> None:
    assert small_talk("thanks!") == "thanks"
    assert small_talk("no, that's all") == "farewell"
    assert small_talk("thanks, but my power is still out and nobody came") is None


@pytest.mark.parametrize("said", ["can we do this on WhatsApp?", "what's app please", "whats app is fine"])
def test_a_channel_named_the_way_speech_to_text_writes_it_is_recognised(said: str) -> None:
    from shared.policies.nlu import requested_channel

    assert requested_channel(said) == "whatsapp"
