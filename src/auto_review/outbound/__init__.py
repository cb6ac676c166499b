"""The one outbound HTTP stack: forge clients, the LLM client and the readiness probe all
send through it.

Small modules, one job each: :mod:`.urls` (the base-URL check), :mod:`.policy` (attempts
and backoff), :mod:`.retry_after` (how long a server asks to wait), :mod:`.capped` (the
streamed size-cap reader), :mod:`.rules` (the words a client's retry rules speak) and
:mod:`.exchange` (the client and its one retry loop, with a deadline per attempt). It
imports only ``core`` and httpx; the clients above keep their own errors and rules.
"""
