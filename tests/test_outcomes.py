"""Outcomes: counted with the same attribution labels as cost, plus the agent name inside a run, so
cost per successful outcome is a division of two series that share labels."""

from __future__ import annotations

import llmmeter.agents as agents
import llmmeter.attribution as attribution
import pytest
from guard_support import CountingServer, chat, guarded
from llmmeter import config, names
from llmmeter.outcomes import record_outcome


@pytest.fixture
def tel(telemetry):
    with guarded(telemetry):
        yield telemetry


def test_outcome_shares_labels_with_cost(tel):
    with CountingServer() as server, attribution.attributes(tenant="acme", feature="support", user="u-1"):
        client = server.client()
        with agents.agent("support-bot"):
            chat(client)
            chat(client)
            record_outcome("ticket_resolved", success=True)
        record_outcome("ticket_resolved", success=False)

    [cost_point] = tel.metric_points(names.METRIC_COST)
    cost_labels = dict(cost_point.attributes)
    points = {(p.attributes[names.LABEL_SUCCESS], p.attributes.get(names.AGENT_NAME)): p
              for p in tel.metric_points(names.METRIC_OUTCOMES)}
    assert set(points) == {("true", "support-bot"), ("false", None)}
    ok = dict(points[("true", "support-bot")].attributes)
    assert ok[names.LABEL_OUTCOME] == "ticket_resolved"
    for key in ("tenant", "feature"):
        assert ok[key] == cost_labels[key]
    assert "user" not in ok  # same rule as the cost counter: user is not a label by default
    # cost per resolved ticket, as a dashboard would compute it:
    per_ticket = cost_point.value / points[("true", "support-bot")].value
    assert per_ticket == pytest.approx(cost_point.value)

    [agent_span] = [s for s in tel.spans() if s.name == "invoke_agent support-bot"]
    [event] = [e for e in agent_span.events if e.name == names.EVENT_OUTCOME]
    assert event.attributes[names.LABEL_SUCCESS] is True


def test_outcome_label_values_are_capped(tel):
    config.set_settings(config.Settings(max_values_per_label=2))
    for tenant in ("a", "b", "c", "d"):
        with attribution.attributes(tenant=tenant):
            record_outcome("signup")
    tenants = sorted(p.attributes["tenant"] for p in tel.metric_points(names.METRIC_OUTCOMES))
    assert tenants == [names.OVERFLOW_VALUE, "a", "b"]
    assert tel.metric_total(names.METRIC_OUTCOMES, tenant=names.OVERFLOW_VALUE) == 2


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="name"):
        record_outcome("bad;name")
    with pytest.raises(ValueError, match="success"):
        record_outcome("ok", success="yes")  # type: ignore[arg-type]
