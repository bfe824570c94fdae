"""Access logs: every request, a sample of them, or none; 4xx and 5xx lines are always kept."""

import itertools
import logging
from typing import Literal

AccessLogMode = Literal["all", "sampled", "off"]


class AccessLogFilter(logging.Filter):
    """A filter for uvicorn's access logger (``uvicorn.access``).

    ``sampled`` keeps one line of ``every`` successful requests (map clients ask for dozens of
    tiles a second) and every line of a request answered 400 or above; ``all`` keeps every
    line and ``off`` none (``terracat serve`` also turns uvicorn's access log off). uvicorn
    logs each request as ``'%s - "%s %s HTTP/%s" %d'``: the status is the last argument.
    """

    def __init__(self, mode: AccessLogMode = "all", every: int = 100) -> None:
        super().__init__()
        self.mode = mode
        self.every = max(1, every)
        self._count = itertools.count()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the line is written."""
        if self.mode != "sampled":
            return self.mode == "all"
        args = record.args if isinstance(record.args, tuple) else ()
        status = args[-1] if args else None
        if not isinstance(status, int) or status >= 400:
            return True
        return next(self._count) % self.every == 0
