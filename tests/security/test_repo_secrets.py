"""No secret is committed: every tracked (or about to be tracked) file is scanned for keys, connection strings,
private keys and tokens.

A hit is allowed only when ALLOWED names the file and the exact text, with the reason it is not a secret (a
well-known emulator key, a test fixture that says it is fake). Anything else fails with the file and line.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 2 * 1024 * 1024  # larger tracked files are data (audio, models), not configuration

PATTERNS = {
    "storage/Cosmos account key": re.compile(r"AccountKey=[A-Za-z0-9+/]{20,}={0,2}"),
    "SAS or Service Bus key": re.compile(r"SharedAccessKey=[A-Za-z0-9+/]{20,}={0,2}"),
    "Application Insights key": re.compile(r"InstrumentationKey=[0-9a-fA-F-]{36}"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "JWT": re.compile(r"\beyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}"),
    "signed Switchboard token": re.compile(r"\beyJ[\w-]{20,}\.[\w-]{43}\b"),
    "OpenAI key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "secret assigned a literal": re.compile(
        r"""(?i)\b\w*(?:secret|password|passwd|api_?key|access_?key|account_?key)\w*["']?\s*[:=]\s*["']"""
        r"""([A-Za-z0-9+/=_\-]{24,})["']"""
    ),
    "URL with a key": re.compile(r"[?&](?:code|sig|key)=[A-Za-z0-9%+/=_-]{20,}"),
}

#: (path, exact matched text) -> why it is not a secret.
ALLOWED: dict[tuple[str, str], str] = {}
#: Built-in Azure role definition ids look like assigned secrets but are public GUIDs.
_GUID = re.compile(r"['\"][0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}['\"]$")
#: Test fixtures whose key says it is fake, in plain text or once base64-decoded ("secret-key-for-the-calls-tests").
_FAKE_WORDS = re.compile(r"(?i)test|fake|dummy|example|placeholder|asks-for-none|not-a-")
_FIXTURE_DIRS = ("tests/", "bench/")
#: Whole files that hold fake credentials on purpose, and why.
ALLOWED_FILES: dict[str, str] = {
    "tests/security/test_repo_secrets.py": "the patterns themselves",
}
#: The Cosmos DB emulator's key: published by Microsoft, the same on every machine, worthless outside it.
COSMOS_EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


def tracked_files() -> list[Path]:
    # Tracked files, and new ones git would add (not ignored): a secret is caught before its first commit.
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def hits(path: Path) -> list[tuple[int, str, str]]:
    """(line number, pattern name, matched text) for every suspicious string in a text file."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return []
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):  # listed but deleted in the working tree, or a submodule
        return []
    if b"\0" in raw[:8192]:
        return []  # binary
    text = raw.decode("utf-8", errors="replace")
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for name, pattern in PATTERNS.items():
            for match in pattern.finditer(line):
                found.append((number, name, match.group(0)))
    return found


def _obviously_fake(text: str) -> bool:
    literal = re.findall(r"[\"']([^\"']+)[\"']", text)
    value = literal[-1] if literal else text
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    tail = value.rstrip("=").rsplit("=", 1)[-1]
    all_zeros = bool(tail) and set(tail) <= set("0-")  # InstrumentationKey=00000000-0000-...
    return bool(_FAKE_WORDS.search(value) or _FAKE_WORDS.search(decoded) or all_zeros)


def test_no_secret_in_tracked_files() -> None:
    files = tracked_files()
    assert len(files) > 50, "git ls-files listed the repository"
    leaks = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        if relative in ALLOWED_FILES:
            continue
        for number, name, text in hits(path):
            if COSMOS_EMULATOR_KEY in text or (relative, text) in ALLOWED or _GUID.search(text):
                continue
            if relative.startswith(_FIXTURE_DIRS) and _obviously_fake(text):
                continue
            leaks.append(f"{relative}:{number}: {name}: {text[:16]}...")
    assert not leaks, "possible secrets in tracked files:\n" + "\n".join(leaks)


@pytest.mark.parametrize(
    "line",
    [
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + "Zm9vYmFy" * 8 + "==;",
        "-----BEGIN RSA PRIVATE KEY-----",
        "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4eHh4eHgifQ.c2lnbmF0dXJlc2lnbmF0dXJl",
        'SWITCHBOARD_TOKEN_SECRET = "' + "q" * 40 + '"',
        '"AZURE_OPENAI_API_KEY": "' + "0123456789abcdef" * 2 + '"',
        "https://app.azurewebsites.net/runtime/webhooks/EventGrid?functionName=x&code=" + "k" * 40,
        "OPENAI_API_KEY=sk-" + "a" * 40,
    ],
)
def test_the_scan_catches_each_kind_of_secret(tmp_path: Path, line: str) -> None:
    sample = tmp_path / "sample.txt"
    sample.write_text(f"harmless\n{line}\n")
    assert [number for number, _, _ in hits(sample)] and hits(sample)[0][0] == 2


def test_only_keys_that_say_they_are_fake_pass_as_fixtures() -> None:
    assert _obviously_fake('ACCESS_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWNhbGxzLXRlc3RzLTEyMzQ1Njc4OTA="')  # "...-tests-..."
    assert _obviously_fake('api_key = "the-local-host-asks-for-none"')
    assert _obviously_fake("InstrumentationKey=00000000-0000-0000-0000-000000000000")
    assert not _obviously_fake('ACCESS_KEY = "' + base64.b64encode(bytes(range(7, 39))).decode() + '"')
    assert not _obviously_fake('password = "Zq8rT2mV9xLp4sWc7nB1yHd6"')
