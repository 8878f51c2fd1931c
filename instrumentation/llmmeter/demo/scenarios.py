"""The demo app's workload: what a small product does with an LLM, feature by feature.

Each scenario runs through the real ``openai`` SDK against :class:`llmmeter.demo.server.DemoServer`.
The same workload feeds the Prometheus proof test, so dashboards and alerts are checked against
numbers a person can reproduce with ``llmmeter demo``.
"""

from __future__ import annotations

from collections.abc import Callable

import openai

import llmmeter.attribution as attribution

UNPRICED_MODEL = "acme-internal-llm-2"

_TICKETS = (
    "Where is my order 1234? It was due yesterday.",
    "Please refund the duplicate charge on my card.",
    "Can I change the delivery address of order 9876?",
)
_REPORT = (
    "Quarterly usage report. Requests grew 12% while token spend grew 31%, driven by longer prompts in the "
    "summarize feature. Cache hit ratio fell from 41% to 29% after the prompt template change on the 3rd. "
)


def support_chat(client: openai.OpenAI) -> None:
    """Tenant acme's support bot: plain chat calls on a small model."""
    with attribution.attributes(tenant="acme", feature="support-chat", route="/api/support", user="u-1001"):
        for ticket in _TICKETS:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "system", "content": "You are a concise support agent."},
                          {"role": "user", "content": ticket}],
            )


def summarize(client: openai.OpenAI) -> None:
    """Tenant globex's report summarizer: streaming, once with usage and once without (estimated)."""
    with attribution.attributes(tenant="globex", feature="summarize", route="/api/summarize", user="u-2002"):
        long_prompt = _REPORT * 30  # > 1,024 tokens: the repeat is served from the prompt cache
        for _ in range(2):
            stream = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Summarize:\n" + long_prompt}],
                stream=True, stream_options={"include_usage": True},
            )
            for _chunk in stream:
                pass
        # An app that never asked for usage: llmmeter estimates the tokens and says so.
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Summarize briefly:\n" + _REPORT}], stream=True,
        )
        for _chunk in stream:
            pass


def triage(client: openai.OpenAI) -> None:
    """Ticket triage on a reasoning model: part of what it bills as output is hidden reasoning."""
    with attribution.attributes(tenant="acme", feature="triage", route="/api/triage", user="u-1002"):
        client.chat.completions.create(
            model="o4-mini", messages=[{"role": "user", "content": "Classify by urgency: " + " | ".join(_TICKETS)}],
        )


def search(client: openai.OpenAI) -> None:
    """Semantic search: embeddings."""
    with attribution.attributes(tenant="acme", feature="search", route="/api/search", user="u-1001"):
        client.embeddings.create(model="text-embedding-3-small", input=list(_TICKETS))


def experimental(client: openai.OpenAI) -> None:
    """A team trying a self-hosted model nobody priced: its cost is unknown, and shown as such."""
    with attribution.attributes(tenant="initech", feature="experimental", route="/api/labs", user="u-3003"):
        client.chat.completions.create(model=UNPRICED_MODEL, messages=[{"role": "user", "content": _TICKETS[0]}])


SCENARIOS: dict[str, Callable[[openai.OpenAI], None]] = {
    "support-chat": support_chat,
    "summarize": summarize,
    "triage": triage,
    "search": search,
    "experimental": experimental,
}


def run_all(client: openai.OpenAI) -> None:
    for scenario in SCENARIOS.values():
        scenario(client)
