"""The Redactor over the real Presidio analyzer and anonymizer and spaCy's English model from PyPI
(loaded once for the module): several entities in one text replaced at the right places, the
entity list obeyed, empty, blank and non-English input safe, no network attempted (tldextract's
suffix list is the bundled snapshot); the policies' routing (`store` for stored values, `prompt`
for user messages only); and, in a fresh interpreter, a tenant without a policy never importing
spaCy or Presidio."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.pii import PiiEngine
from gateway.protocol.pii import DEFAULT_ENTITIES, PiiPolicy
from gateway.services.pii import PiiPolicies, Redactor

TEXT = (
    "Hi, I am John Smith from Paris, mail john.smith@example.com or call 212-555-0198. "
    "Card 4111 1111 1111 1111, IBAN DE89370400440532013000, SSN 536-22-8726, ip 192.168.1.20"
)
REDACTED = (
    "Hi, I am <PERSON> from <LOCATION>, mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>. "
    "Card <CREDIT_CARD>, IBAN <IBAN_CODE>, SSN <US_SSN>, ip <IP_ADDRESS>"
)


class Policies(PiiPolicies):
    """The policies of named tenants, without a store (the store's own test is the admin API's)."""

    def __init__(self, **tenants: PiiPolicy) -> None:
        self.default = PiiPolicy()
        self._tenants = tenants

    async def of(self, tenant_id: str | None) -> PiiPolicy:
        return self._tenants.get(tenant_id or "", self.default)


@pytest.fixture(scope="module")
def engine() -> Iterator[PiiEngine]:
    """One engine for the module, with every connection attempt of its load (when this module is
    the process's first to load Presidio) and of a redaction with an e-mail address refused; the
    extractor's own settings are checked below whatever the order."""
    attempts: list[Any] = []
    connect = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("no network in the PII tests")

    socket.socket.connect = refuse  # type: ignore[method-assign,assignment]
    try:
        engine = PiiEngine()
        assert engine.redact([TEXT], DEFAULT_ENTITIES, 0.35) == [REDACTED]
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]
    assert attempts == []
    yield engine


def test_several_entities_are_replaced_in_place(engine: PiiEngine) -> None:
    import tldextract.tldextract

    extractor = tldextract.tldextract.TLD_EXTRACTOR
    assert extractor.suffix_list_urls == () and not extractor._cache.enabled  # offline, no cache dir
    # Each replacement at its own offsets: the text between findings is untouched.
    [out] = engine.redact([TEXT], DEFAULT_ENTITIES, 0.35)
    assert out == REDACTED
    # Only the entities asked for.
    [emails_only] = engine.redact([TEXT], ["EMAIL_ADDRESS"], 0.35)
    assert emails_only == TEXT.replace("john.smith@example.com", "<EMAIL_ADDRESS>")
    # A phone number without context scores 0.4: above the default threshold, under 0.5.
    [strict] = engine.redact([TEXT], ["PHONE_NUMBER"], 0.5)
    assert strict == TEXT


def test_empty_blank_and_non_english_input(engine: PiiEngine) -> None:
    assert engine.redact([], DEFAULT_ENTITIES, 0.35) == []
    assert engine.redact(["", "  \n"], DEFAULT_ENTITIES, 0.35) == ["", "  \n"]
    assert engine.redact(["nothing personal here"], DEFAULT_ENTITIES, 0.35) == ["nothing personal here"]
    assert engine.redact([TEXT], [], 0.35) == [TEXT]
    # Not English: the patterns still work and nothing breaks; the English model's names are
    # guesses there (it takes "Écrivez" for a person), which errs on the side of redacting.
    french = "Écrivez à marie.dupont@example.fr, s'il vous plaît. 日本語のテキスト。"
    [out] = engine.redact([french], DEFAULT_ENTITIES, 0.35)
    assert out.endswith(" à <EMAIL_ADDRESS>, s'il vous plaît. 日本語のテキスト。")
    [japanese] = engine.redact(["日本語のテキスト、電話 03-1234-5678"], ["EMAIL_ADDRESS"], 0.35)
    assert japanese == "日本語のテキスト、電話 03-1234-5678"


async def test_stored_values_redact_text_fields_only_under_a_store_policy(engine: PiiEngine) -> None:
    redactor = Redactor(Policies(acme=PiiPolicy(store=True), other=PiiPolicy(prompt=True)), engine)
    messages: list[Any] = [
        {"role": "user", "name": "John Smith", "content": "I am John Smith, mail john@example.com"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Call 212-555-0198"},
                {"type": "image_url", "image_url": {"url": "https://example.com/John Smith.png"}},
            ],
        },
        {"role": "assistant", "tool_calls": [{"function": {"arguments": '{"who": "John Smith"}'}}]},
    ]
    stored = await redactor.stored("acme", messages)
    assert stored[0] == {
        "role": "user",
        "name": "John Smith",
        "content": "I am <PERSON>, mail <EMAIL_ADDRESS>",
    }
    assert stored[1]["content"][0] == {"type": "text", "text": "Call <PHONE_NUMBER>"}
    assert stored[1]["content"][1] == messages[1]["content"][1]  # not text: a URL as sent
    assert stored[2] == messages[2]  # tool arguments are JSON a tool parses: kept
    assert messages[0]["content"] == "I am John Smith, mail john@example.com"  # the caller's copy intact
    # Without a store policy (none, or `prompt` only): the very same object back.
    assert await redactor.stored("nobody", messages) is messages
    assert await redactor.stored("other", messages) is messages
    assert await redactor.stored(None, messages) is messages
    assert await redactor.texts("acme", ["Mail anna@example.org"]) == ["Mail <EMAIL_ADDRESS>"]
    redactor.close()


async def test_prompt_policy_redacts_user_messages_and_prompts(engine: PiiEngine) -> None:
    redactor = Redactor(Policies(acme=PiiPolicy(prompt=True), keep=PiiPolicy(store=True)), engine)
    payload: dict[str, Any] = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You help John Smith's company."},
            {"role": "user", "content": "My card is 4111 1111 1111 1111."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": [{"type": "text", "text": "Mail me at ann@example.org"}]},
        ],
    }
    sent = await redactor.prompt("acme", payload)
    assert sent is not None
    assert [m["content"] for m in sent["messages"]] == [
        "You help John Smith's company.",  # the developer's instructions are not the user's text
        "My card is <CREDIT_CARD>.",
        "Noted.",
        [{"type": "text", "text": "Mail me at <EMAIL_ADDRESS>"}],
    ]
    assert payload["messages"][1]["content"] == "My card is 4111 1111 1111 1111."
    assert await redactor.prompt("acme", {"messages": [{"role": "user", "content": "Hello"}]}) is None
    completion = await redactor.prompt("acme", {"prompt": ["Mail ann@example.org", "x"]})
    assert completion == {"prompt": ["Mail <EMAIL_ADDRESS>", "x"]}
    assert await redactor.prompt("keep", payload) is None  # `store` only: the model sees it all
    redactor.close()


def test_a_tenant_without_a_policy_never_loads_spacy() -> None:
    """In a fresh interpreter: the whole gateway app built and a request's redaction calls made
    for a tenant whose policy redacts nothing; neither spaCy nor Presidio is ever imported."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        import gateway.app
        from adapters.pii import PiiEngine
        from gateway.protocol.pii import PiiPolicy
        from gateway.services.pii import PiiPolicies, Redactor

        class Policies(PiiPolicies):
            def __init__(self):
                self.default = PiiPolicy()
            async def of(self, tenant_id):
                return self.default

        async def main():
            redactor = Redactor(Policies(), PiiEngine())
            body = {"messages": [{"role": "user", "content": "I am John Smith"}]}
            assert await redactor.prompt("t", body) is None
            assert await redactor.stored("t", body) is body
        asyncio.run(main())
        heavy = {"spacy", "presidio_analyzer", "tldextract"}
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        print(loaded)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
