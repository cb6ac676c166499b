"""The error classes every layer agrees on.

Each failure a job can meet is either worth retrying later (:class:`TransientError`: the
forge or the model unreachable, a timeout, a 5xx or a rate limit) or not
(:class:`PermanentError`: bad input, something too large, a refusal). The forge, LLM and
git errors derive from one of the two, so code above them can tell the classes apart
without knowing every client's exceptions.
"""

from __future__ import annotations


class AutoReviewError(Exception):
    """Base of the project's own errors. Messages never hold a secret value."""


class TransientError(AutoReviewError):
    """A failure that may go away by itself: retry later."""


class PermanentError(AutoReviewError):
    """A failure that retrying cannot fix."""


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a :class:`TransientError`.

    Wrappers such as a workspace error raised from a git timeout keep the cause, so the
    class of the root failure decides. Everything else, unexpected exceptions (bugs)
    included, is permanent: retrying a bug only repeats it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TransientError):
            return True
        if isinstance(current, PermanentError):
            return False
        seen.add(id(current))
        current = current.__cause__
    return False
