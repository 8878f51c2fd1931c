"""``llmmeter demo``: a small multi-feature app, run through the real openai SDK against a local server."""
