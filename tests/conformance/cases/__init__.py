"""One module per provider SDK surface; each defines ``CASES: list[ProviderCase]`` (see ../framework.py)."""
