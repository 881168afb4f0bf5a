"""A state logged when it turns, not each time it is seen: a dependency found down is a warning once, and
its return one line, per process, however many requests met it meanwhile."""

from __future__ import annotations

import logging
import threading
from typing import Any


class StateLog:
    def __init__(self, logger: logging.Logger, *, up_level: int = logging.INFO) -> None:
        self.logger, self.up_level = logger, up_level
        self._down: Any = None  # what was reported down, None while up
        self._lock = threading.Lock()

    def down(self, message: str, *args: Any, report: Any = True) -> None:
        """Log message (a warning) unless this same report is already down."""
        with self._lock:
            if self._down == report:
                return
            self._down = report
        self.logger.warning(message, *args)

    def up(self, message: str, *args: Any) -> None:
        """Log message if the state was down."""
        with self._lock:
            if self._down is None:
                return
            self._down = None
        self.logger.log(self.up_level, message, *args)
