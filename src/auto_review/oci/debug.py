"""Debug output: one line per decision an operator may want to see (an unknown field
ignored, a bind mount's data option dropped, ``mountLabel`` applied or not).

Messages go to the ``auto_review.oci`` logger at DEBUG level: the CLI's ``--debug`` prints
them on stderr, an API caller sees them through its own logging configuration. ``logging``
is imported only when there is something to say: it costs milliseconds on every `run`.
"""

from __future__ import annotations

LOGGER_NAME = "auto_review.oci"


def debug(message: str) -> None:
    import logging

    logging.getLogger(LOGGER_NAME).debug(message)


def enable_on_stderr() -> None:
    """Print the runtime's debug messages on stderr (the CLI's --debug)."""
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("auto-review oci: debug: %(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
