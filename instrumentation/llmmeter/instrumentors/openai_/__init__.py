"""Translations for the OpenAI SDK (chat, responses, embeddings, legacy completions).

:mod:`llmmeter.instrumentors.openai` installs them; each module here only reads SDK requests and
responses into :class:`llmmeter.call.RequestInfo` / :class:`llmmeter.call.ResponseInfo`.
"""
