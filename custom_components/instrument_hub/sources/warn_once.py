"""Bad input is logged once as a warning, then at debug level: a noisy peer never floods the log."""

from __future__ import annotations

import logging
from typing import Final

LATER_ON_THIS_CONNECTION: Final = (
    "further ones on this connection are only logged at debug level"
)


def warn_first(
    logger: logging.Logger,
    warned: bool,
    message: str,
    *args: object,
    consequence: str,
    later: str = LATER_ON_THIS_CONNECTION,
) -> bool:
    """Log ``message`` as a WARNING saying what follows, or at DEBUG once ``warned``; return True.

    The caller keeps the returned flag (per connection, per plug) and hands it back next time.
    """
    if warned:
        logger.debug(message, *args)
    else:
        template = f"{message}; {consequence}, {later}"
        logger.warning(template, *args)
    return True
