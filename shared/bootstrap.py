"""The one place the app is wired together from settings: stores, policy, conversation, token signer.

Built lazily on first use and cached for the process, so a cold start pays only for what a request needs and the
Azure SDKs behind unused adapters are never imported.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING

from shared.calls import CallControl, build_call_control
from shared.conversation import Conversation
from shared.desk import Desk
from shared.messenger import Messenger, build_messenger
from shared.models import Customer, Identity, IdentityKind
from shared.policies.base import Policy
from shared.queue import QueueMetrics
from shared.scenario import Scenario, load_scenario
from shared.stores import build_customer_store, build_session_state
from shared.stores.base import CustomerStore, SessionState
from shared.sms import SmsSender, build_sms_sender
from shared.sms.outbox import SmsOutbox
from shared.sms.service import SmsService
from shared.tokens import TokenSigner, load_secret
from shared.verification import Verifier, sms_code_sender, whatsapp_code_sender
from shared.whatsapp.service import WhatsAppService

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    scenario: Scenario
    customers: CustomerStore
    state: SessionState
    policy: Policy
    conversation: Conversation
    tokens: TokenSigner
    queue: QueueMetrics
    desk: Desk
    call_control: CallControl
    messenger: Messenger
    sms_sender: SmsSender

    @cached_property
    def whatsapp(self) -> WhatsAppService:
        from shared.handoff import whatsapp_failed  # the handoff's steps take these services: imported once built

        return WhatsAppService(self.scenario, self.customers, self.state, self.conversation, self.messenger,
                               channel_id=self.settings.whatsapp_channel_id,
                               on_handoff_failed=partial(whatsapp_failed, self))

    @cached_property
    def sms(self) -> SmsService:
        return SmsService(self.scenario, self.customers, self.state, self.conversation, self.sms_sender,
                          number=self.settings.acs_sms_from)

    @cached_property
    def texts(self) -> SmsOutbox:
        """Texts outside a conversation (codes, links, promised notifications), refused to a number that opted out."""
        return SmsOutbox(self.customers, self.sms_sender)

    async def close(self) -> None:
        for closeable in (self.sms_sender, self.messenger, self.call_control, self.policy, self.state,
                          self.customers):
            try:
                await closeable.close()
            except Exception:  # closing is best effort; report and go on closing the rest
                log.exception("error while closing %s", type(closeable).__name__)


_services: Services | None = None
_lock = asyncio.Lock()


async def get_services() -> Services:
    global _services
    if _services is None:
        async with _lock:
            if _services is None:
                _services = await build_services(settings_from_env())
    return _services


async def close_services() -> None:
    global _services
    if _services is not None:
        services, _services = _services, None
        await services.close()


def settings_from_env() -> Settings:
    # Imported here: the settings model loads pydantic, which the host need not pay for while it loads the app.
    from shared.settings import Settings

    return Settings.from_env()


async def build_services(settings: Settings) -> Services:
    logging.getLogger().setLevel(settings.log_level)
    scenario = load_scenario(settings.scenario)
    customers = build_customer_store(settings)
    state = build_session_state(settings)
    policy = build_policy(settings, customers)
    desk = Desk(scenario, customers, state)
    messenger = build_messenger(settings)
    sms_sender = build_sms_sender(settings)
    verifier = build_verifier(scenario, state, customers, messenger, sms_sender)
    queue = QueueMetrics(state, desk=desk)
    if not settings.cosmos_endpoint:
        await seed_demo_customers(customers, scenario)
    elif settings.cosmos_key:
        # Key auth means an emulator or a developer's account: make the container if it is missing. With managed
        # identity the infrastructure created it, and the data-plane role could not.
        await customers.ensure()  # type: ignore[attr-defined]
    log.info(
        "services ready: scenario=%s store=%s state=%s policy=%s",
        scenario.name, type(customers).__name__, type(state).__name__, policy.name,
    )
    return Services(
        settings=settings,
        scenario=scenario,
        customers=customers,
        state=state,
        policy=policy,
        conversation=Conversation(
            scenario, customers, state, policy, queue=queue, desk=desk, verifier=verifier,
            session_ttl_seconds=settings.session_ttl_seconds,
        ),
        tokens=TokenSigner(load_secret(settings.token_secret, settings.data_dir)),
        queue=queue,
        desk=desk,
        call_control=build_call_control(settings),
        messenger=messenger,
        sms_sender=sms_sender,
    )


def build_verifier(scenario: Scenario, state: SessionState, customers: CustomerStore, messenger: Messenger,
                   sms_sender: SmsSender) -> Verifier:
    """Codes by text message when an SMS number is configured (WhatsApp for a number that opted out of texts), else
    by WhatsApp with the scenario's authentication template; with neither, knowledge answers only."""
    by_whatsapp = whatsapp_code_sender(scenario, messenger)
    if sms_sender.configured:
        by_sms = sms_code_sender(scenario, SmsOutbox(customers, sms_sender), fallback=by_whatsapp)
        return Verifier(scenario, state, by_sms, sends_sms=True)
    return Verifier(scenario, state, by_whatsapp)


def build_policy(settings: Settings, customers: CustomerStore | None = None) -> Policy:
    """foundry when chosen (or `auto` with AZURE_AI_PROJECT_ENDPOINT), else openai when an endpoint is set, else
    offline. The Foundry policy falls back to whichever of the other two would have been chosen."""
    if settings.uses_llm:
        from shared.policies.openai_policy import OpenAIPolicy  # imports openai: only when configured

        chosen: Policy = OpenAIPolicy(settings)
    else:
        from shared.policies.offline import OfflinePolicy

        chosen = OfflinePolicy()
    if settings.uses_foundry:
        if customers is None:
            raise ValueError("the Foundry policy keeps the conversation id on the customer record: pass the store")
        from shared.policies.foundry import FoundryPolicy  # imports azure-ai-projects: only when configured

        return FoundryPolicy(settings, customers, fallback=chosen)
    return chosen


async def seed_demo_customers(customers: CustomerStore, scenario: Scenario) -> None:
    """Give the embedded store the scenario's demo account holders, so a known phone number is recognised.

    Idempotent: a holder already on record keeps their record; only missing facts are filled in.
    """
    for account in scenario.data.get("accounts", []):
        customer, _ = await customers.get_or_create(Identity(IdentityKind.PHONE, account["phone"]))
        facts = {
            "customer_name": account["name"],
            "account_number": account["account_number"],
            "phone_number": account["phone"],
            "service_address": account["service_address"],
        }
        if not facts.keys() <= customer.collected.keys():

            def fill(c: Customer, facts: dict[str, str] = facts) -> None:
                for key, value in facts.items():
                    c.collected.setdefault(key, value)

            await customers.update(customer.customer_id, fill)
