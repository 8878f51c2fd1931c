"""Instrumenting never imports a framework the app has not imported (importing LangGraph, pydantic-ai or LiteLLM
costs seconds, and LiteLLM fetches a price map at import): the methods are wrapped when the app imports it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from llmmeter.frameworks.langgraph import LangGraphInstrumentor
    from llmmeter.frameworks.mcp import MCPInstrumentor
    from llmmeter.frameworks.openai_agents import OpenAIAgentsInstrumentor
    from llmmeter.frameworks.pydantic_ai import PydanticAIInstrumentor
    from llmmeter.instrumentors._wrap import is_ours
    from llmmeter.instrumentors.litellm import LiteLLMInstrumentor

    for cls in (OpenAIAgentsInstrumentor, LangGraphInstrumentor, MCPInstrumentor, PydanticAIInstrumentor,
                LiteLLMInstrumentor):
        cls().instrument()
    heavy = ("agents", "langgraph", "langchain_core", "pydantic_ai", "mcp", "litellm")
    print("imported:", sorted(m for m in heavy if m in sys.modules))

    import litellm
    import agents.run
    from langgraph.pregel import Pregel
    print("wrapped:", is_ours(litellm.completion), is_ours(vars(agents.run.AgentRunner)["run"]),
          is_ours(vars(Pregel)["invoke"]))
""")


def test_instrumenting_imports_no_framework_and_wraps_on_import():
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout
    assert "wrapped: True True True" in done.stdout
