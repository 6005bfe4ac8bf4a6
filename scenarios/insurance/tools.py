"""Tools of the insurance scenario, over the demo policies in data.yaml."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from shared.scenario import Holder, ScenarioData, ToolResult


def _policy(args: dict[str, Any], data: ScenarioData) -> dict[str, Any] | None:
    def canonical(number: str) -> str:  # "lm 482913", "LM482913" and "LM-482913" are one policy
        return re.sub(r"[^A-Z0-9]", "", number.upper())

    wanted = canonical(str(args.get("policy_number") or ""))
    return next((p for p in data["policies"] if canonical(p["policy_number"]) == wanted), None)


def holder(args: dict[str, Any], data: ScenarioData) -> Holder | None:
    """Who holds the policy the arguments name: codes go to the phone number on the policy; knowledge checks use the
    policy's ZIP code and the holder's last name."""
    policy = _policy(args, data)
    if policy is None:
        return None
    return Holder(policy["phone"], {"policy_zip": str(policy.get("zip", "")), "last_name": policy["holder"].split()[-1]})


def _unknown(args: dict[str, Any]) -> ToolResult:
    return ToolResult(
        data={"error": "policy not found"},
        say=f"I couldn't find policy {args.get('policy_number')}. Could you check the number? It looks like LM-123456.",
        ok=False,
    )


def policy_details(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    policy = _policy(args, data)
    if policy is None:
        return _unknown(args)
    covered = policy.get("vehicle") or policy.get("address")
    return ToolResult(
        data=policy,
        say=(
            f"Your {policy['kind']} policy {policy['policy_number']} covers {covered}, with a "
            f"${policy['deductible']:,} deductible. It renews on {policy['renewal']} at ${policy['premium_monthly']:.2f} a month."
        ),
        slots={"policy_number": policy["policy_number"], "customer_name": policy["holder"]},
    )


#: Days said relative to now ("yesterday", "last night", "two days ago") read without "on": "on yesterday" is not
#: English; a named day or a date takes it ("on Tuesday", "on Dec 3").
_RELATIVE = re.compile(r"^(today|tonight|yesterday|tomorrow|last|this|earlier|the day|an? |one |two |three |\d+ )",
                       re.IGNORECASE)
_NAMED_DAY = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|jan\w*|feb\w*|mar\w*|apr\w*|may|"
                        r"jun\w*|jul\w*|aug\w*|sep\w*|oct\w*|nov\w*|dec\w*)\b", re.IGNORECASE)


def _when(day: str) -> str:
    said = _NAMED_DAY.sub(lambda m: m[0].capitalize(), day.strip())
    return said if _RELATIVE.match(said) else f"on {said}"


def file_claim(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    policy = _policy(args, data)
    if policy is None:
        return _unknown(args)
    key = f"{policy['policy_number']}|{args['incident_date']}|{args['incident']}"
    claim = f"CLM-{int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100000:05d}"
    return ToolResult(
        data={"claim_number": claim, "deductible": policy["deductible"]},
        say=(
            f"I've opened claim {claim} for the {args['incident']} {_when(str(args['incident_date']))}. "
            f"Your deductible is ${policy['deductible']:,}. An adjuster will contact you within one business day."
        ),
        slots={"policy_number": policy["policy_number"]},
    )


def claim_status(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    policy = _policy(args, data)
    if policy is None:
        return _unknown(args)
    claim = next((c for c in data["claims"] if c["policy_number"] == policy["policy_number"]), None)
    if claim is None:
        return ToolResult(data={"claims": []}, say="I don't see any open claims on that policy.")
    return ToolResult(
        data=claim,
        say=f"Claim {claim['claim_number']} is {claim['status']}; {claim['next_step']}.",
    )


TOOLS = {"policy_details": policy_details, "file_claim": file_claim, "claim_status": claim_status}

HOLDER = holder
