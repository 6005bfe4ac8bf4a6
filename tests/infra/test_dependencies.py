"""The lock files: what the function app, the gateway image and `make` install is pinned, hashed, and the same.

The inputs (*.in) say what we need and which versions we accept; `make lock` resolves them into the locks
(requirements-dev.txt, requirements.txt, media_gateway/requirements.txt). These tests catch a lock that no longer
satisfies its input (someone edited an input and did not run `make lock`), a pin without hashes (pip would refuse
the whole file), locks that disagree on a version, and a .venv that is not what the lock says.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {  # lock -> its input
    "requirements-dev.txt": "requirements-dev.in",
    "requirements.txt": "requirements.in",
    "media_gateway/requirements.txt": "media_gateway/requirements.in",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def pins(lock: str) -> dict[str, str]:
    """name -> version, for every package the lock pins; fails on a pin that carries no hash."""
    found: dict[str, str] = {}
    lines = (ROOT / lock).read_text().splitlines()
    for number, line in enumerate(lines):
        if match := PIN.match(line):
            entry = " ".join(lines[number : number + 3])
            assert "--hash=sha256:" in entry, f"{lock}: {match.group(1)} is pinned without a hash"
            found[canonicalize_name(match.group(1))] = match.group(3)
    return found


def inputs(path: str) -> list[Requirement]:
    """The requirements an input file states, following its `-r` includes."""
    file = ROOT / path
    found: list[Requirement] = []
    for raw in file.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found += inputs(str((file.parent / line[3:].strip()).resolve().relative_to(ROOT)))
        else:
            found.append(Requirement(line))
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_every_input_is_pinned_in_its_lock_at_a_version_it_accepts(lock: str) -> None:
    locked = pins(lock)
    for requirement in inputs(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{LOCKS[lock]} needs {requirement} but {lock} does not pin it: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {name}=={locked[name]}, which {LOCKS[lock]} no longer accepts ({requirement}): run `make lock`"
        )


def test_the_function_app_and_the_gateway_install_the_versions_the_tests_run_on() -> None:
    dev = pins("requirements-dev.txt")
    for lock in ("requirements.txt", "media_gateway/requirements.txt"):
        differ = {name: (version, dev.get(name)) for name, version in pins(lock).items() if dev.get(name) != version}
        assert not differ, f"{lock} and requirements-dev.txt disagree (lock, dev): {differ}; run `make lock`"


def test_this_environment_holds_what_the_dev_lock_pins() -> None:
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = {name: (version, installed.get(name)) for name, version in pins("requirements-dev.txt").items()
              if installed.get(name) is not None and installed[name] != version}
    missing = [name for name in pins("requirements-dev.txt") if name not in installed]
    assert not differ, f"installed versions differ from requirements-dev.txt (lock, installed): {differ}; run `make setup`"
    # A pin for another platform or Python (a marker) may be absent; everything else must be there.
    markers = {canonicalize_name(m.group(1)) for m in map(PIN.match, (ROOT / "requirements-dev.txt").read_text()
               .splitlines()) if m and ";" in m.string.split("\\")[0]}
    assert not set(missing) - markers, f"pinned in requirements-dev.txt but not installed: {sorted(set(missing) - markers)}"


def test_the_gateway_image_installs_its_lock_with_hash_checking() -> None:
    dockerfile = (ROOT / "media_gateway" / "Dockerfile").read_text()
    assert "pip install --require-hashes -r media_gateway/requirements.txt" in dockerfile
