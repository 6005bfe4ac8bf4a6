"""Field types the API's models share, and the two base models: requests are strict, responses are closed.

A request is checked in pydantic's strict mode: JSON has no "3" for a number or 1 for true, and the document says
so, so the app must refuse them too (schemathesis sends both). Where the app reads a value more kindly than the
JSON Schema can say (whitespace as Python's str.strip() sees it), the check is a validator and the schema carries
the nearest pattern.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

#: "Holds something other than whitespace", for JSON Schema's ECMA regexes: the app strips with str.strip(), which
#: also strips \x1c-\x1f and \x85, which ECMA's \s does not count as whitespace.
NOT_BLANK_PATTERN = r"[^\s\x1c-\x1f\x85]"
#: Query values the desk and the chat page accept for a version or a turn count.
MAX_COUNTER = 10**15


class RequestBody(BaseModel):
    """A JSON body a client sends: unknown fields refused, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ResponseBody(BaseModel):
    """A JSON body the app answers with: closed, so the document promises no field it does not send."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Query parameters: strings on the wire, read into numbers by the field types below; others are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True)
class Schema:
    """Annotation metadata adding keywords to a field's JSON Schema (what a validator checks, in the schema's words)."""

    keywords: dict[str, Any]

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        schema.update(self.keywords)
        return schema


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank", "String should hold something other than whitespace")
    return text


#: A string of at least one character.
NonEmpty = Annotated[str, Field(min_length=1)]
#: An ISO 8601 timestamp, as the records keep it.
Timestamp = Annotated[str, Schema({"format": "date-time"})]


# Length bounds go before a validator in each Annotated: after it, pydantic checks them as a generic constraint
# ("Value should have at most 2000 items after validation") and writes them into the JSON Schema under Python names.


def matching(pattern: str, expected: str, max_length: int) -> Any:
    """A string matching `pattern` (a JSON Schema and Python regex alike), refused as `expected` otherwise."""
    compiled = re.compile(pattern)

    def check(text: str) -> str:
        if not compiled.search(text):
            raise PydanticCustomError("pattern_mismatch", expected)
        return text

    return Annotated[str, Field(max_length=max_length), AfterValidator(check), Schema({"pattern": pattern})]


def message_text(max_chars: int, description: str) -> Any:
    """What a customer or a person types: not blank, at most `max_chars` (WEBCHAT_MAX_MESSAGE_CHARS)."""
    length = Field(min_length=1, max_length=max_chars, description=description)
    return Annotated[str, length, AfterValidator(_not_blank), Schema({"pattern": NOT_BLANK_PATTERN})]


def _integral(value: Any) -> Any:
    # JSON has one number type: 3.0 is the integer 3 (JSON Schema's "integer" says so too).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def whole_number(minimum: int, maximum: int) -> Any:
    """A whole number in a body, 3.0 included."""
    return Annotated[int, Field(ge=minimum, le=maximum), BeforeValidator(_integral)]


def _query_digits(raw: Any) -> Any:
    # Only plain ASCII digits: int() would take " 5", "+5", "1_000" and "٣", which the document's integer is not.
    if isinstance(raw, str) and not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise PydanticCustomError("int_parsing", "Input should be a whole number")
    return int(raw) if isinstance(raw, str) else raw


def _query_seconds(raw: Any) -> Any:
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds):
        raise PydanticCustomError("float_parsing", "Input should be a number of seconds")
    return seconds


def query_int(minimum: int, maximum: int, description: str) -> Any:
    """A whole-number query parameter from `minimum` to `maximum` (a version, a number of turns, hours)."""
    return Annotated[int, Field(ge=minimum, le=maximum, description=description), BeforeValidator(_query_digits)]


def query_seconds(maximum: float, description: str) -> Any:
    """A query parameter of seconds from 0 to `maximum` (how long a long poll may wait)."""
    return Annotated[float, Field(ge=0, le=maximum, description=description), BeforeValidator(_query_seconds)]
