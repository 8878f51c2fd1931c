"""Agent-framework instrumentors: runs started by a framework become llmmeter agent runs.

One module per framework (``openai_agents``, ...), each a ``BaseInstrumentor`` with an
``opentelemetry_instrumentor`` entry point, so ``opentelemetry-instrument`` picks them up with no code
change. Their runs are :class:`llmmeter.Run` objects like ``with llmmeter.agent(...)`` makes: the same
``invoke_agent`` / ``execute_tool`` spans, ``llmmeter.run.*`` totals and loop guard, with limits per agent
name from :mod:`llmmeter.frameworks.guards`. Model calls are priced by the provider instrumentors
(openai, anthropic, ...) underneath, never by the framework layer, so nothing is counted twice.
"""

from __future__ import annotations

from llmmeter.frameworks.guards import clear_agent_guards, guard_for, set_agent_guard

__all__ = ["clear_agent_guards", "guard_for", "set_agent_guard"]
