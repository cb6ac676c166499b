"""The one composition root: settings in, objects out.

Only this package (and the commands above it) turns :class:`~auto_review.config.Settings`
into objects: the TLS context, the forge clients, the LLM client, the stores, the review
runner. Everything below it receives plain values and an ``ssl.SSLContext``.
"""
