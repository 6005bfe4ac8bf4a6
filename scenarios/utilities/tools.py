"""Tools of the utilities scenario. Each takes the filled arguments and the scenario's demo data.

They read the demo back-office data in data.yaml; a real deployment swaps these bodies for calls to its billing,
outage-management and field-service systems. Results carry facts for an LLM (`data`), a sentence for the offline
policy (`say`), and the slots they learned (so nobody asks the customer for them later).
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from shared.notifications import PromiseSpec
from shared.scenario import Holder, ScenarioData, ToolResult


def _account(args: dict[str, Any], data: ScenarioData) -> dict[str, Any] | None:
    number = str(args.get("account_number") or "")
    phone = str(args.get("phone_number") or "")
    for account in data["accounts"]:
        if (number and account["account_number"] == number) or (phone and account["phone"] == phone):
            return account
    return None


def holder(args: dict[str, Any], data: ScenarioData) -> Holder | None:
    """Who holds the account the arguments name: codes go to their number on record; knowledge checks use the
    service ZIP code and their last name."""
    account = _account(args, data)
    if account is None:
        return None
    answers = {"service_zip": str(account.get("service_zip", "")), "last_name": account["name"].split()[-1]}
    return Holder(account["phone"], answers)


def _not_found(args: dict[str, Any]) -> ToolResult:
    given = args.get("account_number") or args.get("phone_number")
    return ToolResult(
        data={"error": "account not found", "looked_up": given},
        say=f"I couldn't find an account for {given}. Could you check the account number or the phone number on the account?",
        ok=False,
    )


def _learned(account: dict[str, Any]) -> dict[str, str]:
    return {
        "account_number": account["account_number"],
        "phone_number": account["phone"],
        "customer_name": account["name"],
        "service_address": account["service_address"],
    }


def _first_name(account: dict[str, Any]) -> str:
    return account["name"].split()[0]


def _ticket(prefix: str, *parts: str) -> str:
    """A stable reference, so a repeated request gets the same number rather than a second ticket."""
    return f"{prefix}-{int(hashlib.sha256('|'.join(parts).encode()).hexdigest()[:8], 16) % 100000:05d}"


def get_balance(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    account = _account(args, data)
    if account is None:
        return _not_found(args)
    facts = {k: account[k] for k in ("name", "balance", "due_date", "last_payment", "autopay")}
    if account["balance"] <= 0:
        say = f"Thanks, {_first_name(account)}. Your account is paid up: there's nothing due right now."
    else:
        say = (
            f"Thanks, {_first_name(account)}. Your current balance is ${account['balance']:.2f}, "
            f"due {account['due_date']}. Your last payment was ${account['last_payment']['amount']:.2f} "
            f"on {account['last_payment']['date']}."
        )
    return ToolResult(data=facts, say=say, slots=_learned(account))


def payment_options(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    account = _account(args, data)
    options = ["online at the customer portal", "by phone, any time", "with autopay from a bank account"]
    say = "You can pay " + ", ".join(options[:-1]) + f", or {options[-1]}."
    if account is not None and not account["autopay"]:
        say += " I see autopay isn't on for your account yet; it takes a minute to set up online."
    return ToolResult(data={"options": options, "autopay": account and account["autopay"]}, say=say,
                      slots=_learned(account) if account else {})


def dispute_charge(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    """A small dispute is put on hold for review here; one over the limit goes to a person (ToolResult.escalate)."""
    account = _account(args, data)
    if account is None:
        return _not_found(args)
    amount = _dollars(args.get("disputed_amount"))
    if amount is None or amount <= 0:
        return ToolResult(
            data={"error": "no amount", "given": args.get("disputed_amount")},
            say="Sorry, I didn't catch the amount. How much is the charge you're disputing, in dollars?",
            ok=False,
        )
    limit = float(data["disputes"]["desk_over"])
    facts = {"account_number": account["account_number"], "disputed_amount": round(amount, 2), "limit": limit}
    if amount > limit:
        return ToolResult(
            data={**facts, "handled_by": "a person on the billing team"},
            say=(
                f"A dispute of ${amount:,.2f} needs someone from our billing team, so I'll pass it to them with "
                "everything you've told me."
            ),
            slots=_learned(account),
            escalate=f"billing dispute over ${limit:,.0f}: ${amount:,.2f} disputed",
        )
    ticket = _ticket("DSP", account["account_number"], f"{amount:.2f}")
    days = data["disputes"]["review_days"]
    return ToolResult(
        data={**facts, "dispute": ticket, "review_days": days},
        say=(
            f"Done, {_first_name(account)}: I've put ${amount:,.2f} on hold while we review it, "
            f"under dispute {ticket}. "
            f"You won't be charged for it meanwhile, and we'll tell you the outcome within {days} business days."
        ),
        slots=_learned(account),
    )


def _dollars(raw: Any) -> float | None:
    try:
        return float(str(raw).replace("$", "").replace(",", "").strip())
    except ValueError:
        return None


def check_outage(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    account = _account(args, data)
    address = _outage_address(account, str(args.get("service_address") or ""))
    if not address:
        return _not_found(args)
    outage = next(
        (o for o in data["outages"] if o["status"] == "active" and any(_on_street(address, s) for s in o["streets"])),
        None,
    )
    learned = {**(_learned(account) if account else {}), "service_address": address}
    if outage is not None and data.has_happened(f"outage_restored:{outage['id']}"):  # POST .../restored said so
        ticket = _ticket("RPT", address)
        return ToolResult(
            data={"address": address, "known_outage": False, "restored_outage": outage["id"], "report": ticket},
            say=(
                f"The outage at {address}, caused by {outage['cause']}, is over: power has been restored. "
                f"If you're still without power, I've logged report {ticket} and a crew will check the line within "
                "4 hours. Meanwhile, it's worth checking your breaker panel."
            ),
            slots=learned,
        )
    if outage is None:
        ticket = _ticket("RPT", address)
        return ToolResult(
            data={"address": address, "known_outage": False, "report": ticket},
            say=(
                f"I don't see a reported outage at {address}, so I've logged report {ticket} for you. "
                "A crew will check the line within 4 hours. Meanwhile, it's worth checking your breaker panel."
            ),
            slots=learned,
        )
    return ToolResult(
        data={"address": address, "known_outage": True, **{k: outage[k] for k in ("id", "cause", "customers_affected", "eta")}},
        say=(
            f"Yes, there's an active outage affecting {address}, caused by {outage['cause']}. "
            f"About {outage['customers_affected']:,} customers are affected, and crews expect power back "
            f"by {outage['eta']}. You don't need to report it; we'll text you when it's restored."
        ),
        slots=learned,
        promise=f"outage_restored:{outage['id']}",  # the text the reply promises (POST /api/ops/outages/{id}/restored)
    )


def _outage_address(account: dict[str, Any] | None, given: str) -> str:
    """Where to look for the outage: the address the customer gave, when it is another place than the account's
    ("no, I'm at 12 Lakeview Dr" from a known caller); else the account's, which is the whole address."""
    if account is None:
        return given
    home = account["service_address"]
    same = not given or home.lower().startswith(given.lower()) or given.lower().startswith(home.lower())
    return home if same else given


def _on_street(address: str, street: str) -> bool:
    """"123 Oak St, Springfield" is on Oak St; so are "45 Birch Road" (as a caller says it, and speech-to-text
    writes it) and "123 Oak", as a customer correcting themselves says it ("no, 123 Oak, not Elm"), while "77 Elm
    Ave" is not."""
    address, street = _abbreviated(address), _abbreviated(street)
    if re.search(rf"\b{re.escape(street)}\b", address):
        return True
    name = street.rpartition(" ")[0] or street
    return bool(re.fullmatch(rf"\d+ {re.escape(name)}", address.strip()))


_STREET_TYPES = {"street": "st", "road": "rd", "lane": "ln", "drive": "dr", "avenue": "ave", "court": "ct",
                 "boulevard": "blvd", "place": "pl"}
_STREET_TYPE = re.compile(r"\b(" + "|".join(_STREET_TYPES) + r")\b\.?")


def _abbreviated(text: str) -> str:
    """Lower case, with street types as the outage data writes them ("Birch Road" -> "birch rd")."""
    return _STREET_TYPE.sub(lambda m: _STREET_TYPES[m[1]], text.lower().replace(".", ""))


_NAMED_DAY = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|jan\w*|feb\w*|mar\w*|apr\w*|may|"
                        r"jun\w*|jul\w*|aug\w*|sep\w*|oct\w*|nov\w*|dec\w*)\b", re.IGNORECASE)


def _day(when: str) -> str:
    """A day as the customer named it, written as a sentence writes it: "tomorrow", "next Friday", "Dec 3"."""
    return _NAMED_DAY.sub(lambda m: m[0].capitalize(), when.strip())


def schedule_service(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    account = _account(args, data)
    if account is None:
        return _not_found(args)
    kind = str(args["service_request"])
    label = data["service_request_types"].get(kind, kind)
    address = str(args.get("service_address") or account["service_address"])
    when = _day(str(args["preferred_date"]))
    ticket = _ticket("SR", account["account_number"], kind, when)
    follow_up = _follow_up_at(when, datetime.now(timezone.utc).date())
    return ToolResult(
        data={"request": label, "address": address, "date": when, "confirmation": ticket},
        say=f"Done: I've booked {label} at {address} for {when}. Your confirmation number is {ticket}."
            + (" We'll check in with you after the visit." if follow_up else ""),
        slots=_learned(account),
        # The follow-up the reply promises, due the evening of the booked day (shared/notifications.py).
        promise=f"service_follow_up:{ticket}@{follow_up.isoformat()}" if follow_up else None,
    )


#: When, on the booked day, we check in (UTC: the demo utility's day ends about then).
FOLLOW_UP_TIME = time(18, 0, tzinfo=timezone.utc)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _follow_up_at(when: str, today: date) -> datetime | None:
    """The evening of the day the customer booked ("today", "tomorrow", "Friday", "next Friday"); None for a day
    these words do not pin down ("Dec 3", "soon"): nothing is promised about it then."""
    words = when.lower().split()
    if words == ["today"]:
        day = today
    elif words == ["tomorrow"]:
        day = today + timedelta(days=1)
    elif words and words[-1] in _WEEKDAYS and words[:-1] in ([], ["next"], ["this"], ["on"]):
        day = today + timedelta(days=(_WEEKDAYS.index(words[-1]) - today.weekday()) % 7 or 7)  # the coming one
    else:
        return None
    return datetime.combine(day, FOLLOW_UP_TIME)


def get_usage(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    account = _account(args, data)
    if account is None:
        return _not_found(args)
    months = list(account["usage_kwh"].items())
    (prev_month, prev), (month, last) = months[-2], months[-1]
    change = (last - prev) / prev * 100
    trend = "more" if change > 0 else "less"
    return ToolResult(
        data={"usage_kwh": account["usage_kwh"], "average_kwh": account["average_kwh"]},
        say=(
            f"In {month} you used {last} kWh, {abs(change):.0f}% {trend} than in {prev_month}. "
            f"Your monthly average is {account['average_kwh']} kWh."
        ),
        slots=_learned(account),
    )


def energy_tips(args: dict[str, Any], data: ScenarioData) -> ToolResult:
    tips = ["set the thermostat 2 degrees lower in winter", "run the dishwasher and laundry off-peak, after 9 PM",
            "replace old bulbs with LEDs"]
    return ToolResult(data={"tips": tips}, say="A few easy savings: " + "; ".join(tips) + ".")


def _outage(ref: str, data: ScenarioData) -> dict[str, Any] | None:
    return next((o for o in data["outages"] if str(o["id"]) == ref), None)


def _restored_text(ref: str, collected: dict[str, str], data: ScenarioData) -> str:
    outage = _outage(ref, data) or {}
    address = collected.get("service_address") or str(outage.get("area") or "your address")
    return f"power is back on at {address}. Thanks for your patience."


def _follow_up_text(ref: str, collected: dict[str, str], data: ScenarioData) -> str:
    ticket = ref.partition("@")[0]
    name = collected.get("customer_name", "").split()[:1]
    return (f"hi{' ' + name[0] if name else ''}, how did your service visit ({ticket}) go? Reply here if anything "
            "still needs doing.")


# What the tools' promises say and when they are due (shared/notifications.py): the outage's text goes when the
# outage-management system says it is over, or when this data stops listing it as active.
PROMISES = {
    "outage_restored": PromiseSpec(
        text=_restored_text, agent="OutageAgent",
        happened=lambda ref, data: (_outage(ref, data) or {}).get("status", "active") != "active",
    ),
    "service_follow_up": PromiseSpec(text=_follow_up_text, agent="ServiceAgent"),
}

TOOLS = {
    "get_balance": get_balance,
    "payment_options": payment_options,
    "dispute_charge": dispute_charge,
    "check_outage": check_outage,
    "schedule_service": schedule_service,
    "get_usage": get_usage,
    "energy_tips": energy_tips,
}

HOLDER = holder
