"""HTTP trigger routes: the host's route templates (`items/{id:int}`, `files/{*rest}`, `{name?}`) as regexes.

The templates follow ASP.NET routing, as the real Functions host does: case-insensitive, type constraints such as
`:int` narrow what a parameter matches, and more specific routes win when several match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from azure.functions.decorators.function_app import Function

_PARAM = re.compile(r"\{([^{}]+)\}")
_CONSTRAINTS: dict[str, str] = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "decimal": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "bool": r"true|false",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}",
}


@dataclass(frozen=True)
class HttpRoute:
    """An HTTP trigger's route template, compiled once: `webchat/sessions/{session_id}`, `{id:int}`, `{*rest}`."""

    function: Function
    template: str
    methods: frozenset[str] | None  # None: every method
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    rank: tuple[int, ...]  # literal segments win over parameters, parameters over catch-alls (as in ASP.NET)
    auth_level: str = "function"  # "anonymous", "function" or "admin": the key the host asks for (local/auth.py)

    @classmethod
    def compile(cls, function: Function, template: str, methods: frozenset[str] | None) -> HttpRoute:
        regex = ""
        names: list[str] = []
        rank: list[int] = []

        def param(spec: str, default: str = "[^/]+?") -> str:
            name, *constraints = spec.split(":")  # extra constraints such as min(1) are not enforced
            names.append(name)
            known = [_CONSTRAINTS[c] for c in constraints if c in _CONSTRAINTS]
            return f"(?P<p{len(names) - 1}>{known[0] if known else default})"

        for segment in filter(None, template.split("/")):
            whole = _PARAM.fullmatch(segment)
            if whole and whole[1].startswith("*"):  # catch-all: the rest of the path, possibly empty
                regex += f"(?:/{param(whole[1].lstrip('*'), '.*')})?"
                rank.append(4)
                break
            if whole and whole[1].endswith("?"):  # optional segment
                regex += f"(?:/{param(whole[1][:-1])})?"
                rank.append(3)
                continue
            pieces: list[str] = []
            last = 0
            for match in _PARAM.finditer(segment):
                pieces += [re.escape(segment[last : match.start()]), param(match[1])]
                last = match.end()
            regex += "/" + "".join(pieces) + re.escape(segment[last:])
            rank.append(0 if not pieces else 1 if ":" in segment else 2)
        pattern = re.compile(regex + "/?", re.IGNORECASE)  # routes are case-insensitive; a trailing / is fine
        return cls(function, template, methods, pattern, tuple(names), tuple(rank), declared_auth_level(function))

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters for a raw path (after the prefix), or None."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        values = (found[f"p{i}"] for i in range(len(self.names)))
        return {name: unquote(value) for name, value in zip(self.names, values) if value is not None}


def declared_auth_level(function: Function) -> str:
    """The HTTP trigger's declared authLevel, as the host reads it from the function's binding: "anonymous",
    "function" or "admin". A trigger that declares none is "function", the Functions host's default."""
    level = getattr(function.get_trigger(), "auth_level", None)
    return str(getattr(level, "value", level) or "function").lower()
