"""Small, deterministic language understanding for the offline policy: intents from a scenario's own words.

No model and no network. Text is normalised (contractions, punctuation), stemmed with a light suffix stripper and
matched two ways: weighted keywords and phrases from the scenario ("no electricity" 4, "power" 1), and the best
word overlap with the scenario's example sentences. Keywords carry ordinary paraphrase ("lights are out",
"no electricity at my house", "power's down"); examples catch what keywords miss.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from shared.scenario import Scenario

_CONTRACTIONS = [
    (r"\bcan't\b", "can not"),
    (r"\bwon't\b", "will not"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'m\b", " am"),
    (r"'ve\b", " have"),
    (r"'ll\b", " will"),
    (r"'d\b", " would"),
    (r"'s\b", " is"),
]

# Words that carry no intent. "no", "not", "out", "off", "down", "back" are kept: they carry outages.
_STOPWORDS = frozenset(
    """a an the i me my mine we our you your it its is am are was were be been being to of in on at for with
    and or but so that this these those there here do does did have has had just please hi hello hey can could
    would will shall should may might must about im ive id also really very some any get got from as by up
    what when where which who why how okay ok um uh like need want""".split()
)

# Asking for a person, said the many ways people say it ("get me an agent", "can I speak with someone", "a real
# human please"), but not a message that merely names one ("human error on my bill", "I need someone to fix my
# meter": that is a service request).
_PEOPLE = r"(person|human( being)?|agent|rep|representative|operator|manager|supervisor|someone|somebody|people)"
_ASK_FOR_A_PERSON = "|".join([
    rf"\b(speak|talk|chat)(ing)? (to|with) (an? |some |your |the |one of your )?(real |live |actual )?{_PEOPLE}\b",
    rf"\b(put|transfer|connect|send) me (through |over )?(to|with) (an? |some |your )?({_PEOPLE}|customer service)\b",
    r"\b(want|need|like|get|give|have)( me)? (an? |to (speak|talk) to an? )(real |live |actual )?"
    r"(person|human|agent|representative|operator)\b",
    r"\b(real|live|actual) (person|human|people|agent)\b",
    r"\b(human being|representative|operator|live agent|customer service)\b",
    r"^\W*(an? )?(agent|human|person)( please)?\W*$",
])

_SMALL_TALK = {  # in this order: "ok thanks, that's all" is a goodbye, not only thanks
    "farewell": re.compile(
        r"^\s*(ok(ay)?,? |great,? |perfect,? )?(no,? )?(thanks|thank you)?,? ?(bye|goodbye|good bye|that'?s (all|it)|"
        r"that is (all|it)|nothing else|no thanks?|all good|i'?m good)\b",
        re.I,
    ),
    "thanks": re.compile(r"\b(thanks|thank you|thx|cheers|appreciate it|great,? thanks)\b", re.I),
    "greeting": re.compile(r"^\s*(hi|hello|hey|good (morning|afternoon|evening))[\s!.,]*$", re.I),
    "human": re.compile(_ASK_FOR_A_PERSON, re.I),
}

_DONT_KNOW = re.compile(
    r"\b(don'?t|do not|doesn'?t) (know|have|remember)|\bnot sure\b|\bno idea\b|\bcan'?t (find|remember)|\bforgot\b", re.I
)


_AFFIRM = re.compile(
    r"^\s*(yes|yeah|yep|yup|sure|ok|okay|please( do)?|go ahead|that works|sounds good|do it|send it|absolutely|"
    r"of course|why not|let'?s do (it|that))\b",
    re.I,
)
_DENY = re.compile(r"^\s*(no|nope|nah|not now|i'?ll (wait|stay)|no,? thanks?|i'?d rather (wait|stay))\b", re.I)
_CHANNEL_WORDS = {
    "whatsapp": re.compile(r"\bwhat'?s\s?app\b|\btext me\b", re.I),  # speech-to-text may write "what's app"
    "webchat": re.compile(r"\bweb\s?chat\b|\bchat (online|instead)\b|\bonline chat\b|\bsend me a link\b", re.I),
}


_DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9"}
_DIGIT_WORD = re.compile(r"\b(" + "|".join(_DIGIT_WORDS) + r")\b", re.I)
_REPEATED = re.compile(r"\b(double|triple) (" + "|".join(_DIGIT_WORDS) + r"|\d)\b", re.I)


def spoken_digits(text: str) -> str | None:
    """The message with a number said in words written in digits ("five five five, five five five, oh one one one",
    "double five"), as speech-to-text often gives a caller's number; None when it says no such number (fewer than
    four digit words: "one question" is not a number)."""
    if len(_DIGIT_WORD.findall(text)) < 4:
        return None
    text = _REPEATED.sub(lambda m: _DIGIT_WORDS.get(m[2].lower(), m[2]) * (2 if m[1].lower() == "double" else 3), text)
    text = _DIGIT_WORD.sub(lambda m: _DIGIT_WORDS[m[1].lower()], text)
    return re.sub(r"(?<=\d)[ ,.-]+(?=\d)", "", text)  # "5, 5, 5" is one number, as said


_ABOUT_IT = re.compile(r"\b(it|that|this|them|those)\b", re.I)
_A_QUESTION = re.compile(r"\?\s*$|^\s*(so |and |ok,? )?(what|when|how|why|any|is|has|have|will|did|does)\b", re.I)


def asks_about_it(text: str) -> bool:
    """A question about something already said ("so what's happening with it?", "is that still right?"): a follow-up
    on the last answer, even without a word that names its topic."""
    return bool(_ABOUT_IT.search(text) and _A_QUESTION.search(text))


def affirm(text: str) -> bool:
    return bool(_AFFIRM.search(text))


def deny(text: str) -> bool:
    return bool(_DENY.search(text))


def requested_channel(text: str) -> str | None:
    """The channel a message names ("can we do this on WhatsApp?"), if any."""
    return next((channel for channel, words in _CHANNEL_WORDS.items() if words.search(text)), None)


def dont_know(text: str) -> bool:
    """The customer says they cannot give what was asked ("I don't have my account number")."""
    return bool(_DONT_KNOW.search(text))


def normalize(text: str) -> str:
    text = text.lower().replace("’", "'")
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    return re.sub(r"[^a-z0-9$ ]+", " ", text)


def stem(word: str) -> str:
    """A light suffix stripper: enough to make bill/bills/billing and light/lights meet."""
    for suffix in ("ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def tokens(text: str, *, keep_stopwords: bool = False) -> list[str]:
    return [stem(w) for w in normalize(text).split() if keep_stopwords or w not in _STOPWORDS]


def small_talk(text: str) -> str | None:
    """'thanks', 'farewell', 'greeting' or 'human' when that is all the message is about, else None."""
    for name, pattern in _SMALL_TALK.items():
        if pattern.search(text) and len(tokens(text)) <= 5:
            return name
    return None


@dataclass(frozen=True)
class Match:
    intent: str
    score: float


class IntentClassifier:
    """Scores a message against every intent of a scenario; built once per scenario."""

    #: Below this a message is not about any intent (the agent asks or carries on with what it was doing).
    THRESHOLD = 1.5

    def __init__(self, scenario: Scenario) -> None:
        self._keywords: dict[str, list[tuple[tuple[str, ...], float]]] = {}
        self._examples: dict[str, list[frozenset[str]]] = {}
        for name, intent in scenario.intents.items():
            self._keywords[name] = [(tuple(tokens(k, keep_stopwords=True)), w) for k, w in intent.keywords.items()]
            self._examples[name] = [frozenset(tokens(e)) for e in intent.examples]
        # Words frequent across all examples say little; weight overlap by inverse document frequency.
        docs = [e for examples in self._examples.values() for e in examples]
        self._idf = {
            w: math.log((1 + len(docs)) / (1 + sum(w in d for d in docs))) + 1 for d in docs for w in d
        }

    def scores(self, text: str) -> list[Match]:
        words = tokens(text, keep_stopwords=True)
        content_words = tokens(text)
        content = frozenset(content_words)
        matches = []
        for name, keywords in self._keywords.items():
            # Phrases match with or without the small words in between ("power has been off" ~ "power off").
            keyword_score = max(self._keyword_score(words, keywords), self._keyword_score(content_words, keywords))
            score = keyword_score + 3 * self._example_score(content, name)
            if score > 0:
                matches.append(Match(name, round(score, 3)))
        return sorted(matches, key=lambda m: -m.score)

    def classify(self, text: str) -> Match | None:
        ranked = self.scores(text)
        if not ranked or ranked[0].score < self.THRESHOLD:
            return None
        return ranked[0]

    @staticmethod
    def _keyword_score(words: list[str], keywords: list[tuple[tuple[str, ...], float]]) -> float:
        score, used = 0.0, set()
        # Longest phrases first, and each word counts once: "power is out" must not also score "power".
        for phrase, weight in sorted(keywords, key=lambda kw: -len(kw[0])):
            for start in _find(words, phrase):
                span = set(range(start, start + len(phrase)))
                if not span & used:
                    used |= span
                    score += weight
                    break
        return score

    def _example_score(self, content: frozenset[str], intent: str) -> float:
        best = 0.0
        for example in self._examples[intent]:
            shared = content & example
            if not shared:
                continue
            overlap = sum(self._idf.get(w, 1.0) for w in shared)
            total = math.sqrt(sum(self._idf.get(w, 1.0) for w in content) * sum(self._idf.get(w, 1.0) for w in example))
            best = max(best, overlap / total)
        return best


def _find(words: list[str], phrase: tuple[str, ...]) -> list[int]:
    n = len(phrase)
    return [i for i in range(len(words) - n + 1) if tuple(words[i : i + n]) == phrase] if n else []


@lru_cache(maxsize=8)
def classifier_for(scenario: Scenario) -> IntentClassifier:
    return IntentClassifier(scenario)
