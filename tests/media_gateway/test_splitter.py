"""Cutting streamed reply text into pieces TTS can start on."""

from __future__ import annotations

from media_gateway.splitter import ClauseSplitter

OUTAGE = (
    "Yes, there's an active outage affecting 123 Oak St, Springfield, caused by a damaged transformer. About 2,400 "
    "customers are affected, and crews expect power back by 4:00 PM. You don't need to report it; we'll text you "
    "when it's restored."
)


def split(text: str, step: int) -> list[str]:
    splitter = ClauseSplitter()
    pieces: list[str] = []
    for start in range(0, len(text), step):
        pieces += splitter.feed(text[start : start + step])
    return pieces + splitter.flush()


def test_the_first_clause_goes_as_soon_as_it_is_complete_then_whole_sentences() -> None:
    assert split(OUTAGE, 7) == [
        "Yes, there's an active outage affecting 123 Oak St,",
        "Springfield, caused by a damaged transformer.",
        "About 2,400 customers are affected, and crews expect power back by 4:00 PM.",
        "You don't need to report it; we'll text you when it's restored.",
    ]


def test_how_the_text_is_streamed_does_not_change_the_pieces() -> None:
    assert split(OUTAGE, 1) == split(OUTAGE, 50) == split(OUTAGE, len(OUTAGE))


def test_the_first_piece_waits_while_it_is_too_short_to_say_alone() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed("Sure, ") == []
    assert splitter.feed("I can help with that, ") == ["Sure, I can help with that,"]


def test_numbers_times_and_abbreviations_stay_whole() -> None:
    pieces = split("Your balance is $127.45, due Dec. 15 at 4:30 PM. Dr. Lee visits 9 Maple Ct. in Shelbyville.", 5)
    assert pieces == ["Your balance is $127.45,", "due Dec. 15 at 4:30 PM.", "Dr. Lee visits 9 Maple Ct. in Shelbyville."]


def test_a_long_sentence_is_cut_at_a_clause_once_it_is_long() -> None:
    long = "I can help with billing, outages, starting or stopping service, moving to a new address, " \
           "booking a technician for a repair, and lowering your energy use, whichever you need today."
    pieces = split(long, 9)
    assert pieces[0] == "I can help with billing,"  # the first clause, early
    assert len(pieces) == 3 and len(pieces[1]) >= 120 and pieces[1].endswith(",") and " ".join(pieces) == long


def test_flush_returns_what_is_left() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed("What can I do for you today") == []
    assert splitter.flush() == ["What can I do for you today"]
    assert splitter.flush() == []
