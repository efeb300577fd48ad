"""The receiver's logging: one handler for clerksync's, uvicorn's and asyncio's loggers.

``serve --log-json`` makes every line one JSON object (a delivery's fields at the top
level); either way a message repeated by hostile traffic is capped (``RepeatLimit``), so
the log stays bounded whatever is sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any


def log_delivery(
    svix_id: str | None,
    event_type: str | None,
    object_id: str | None,
    user_id: str | None,
    outcome: str,
    status: int,
    duration_ms: float,
    error: str | None,
) -> None:
    """One line per delivery; with ``--log-json`` its fields are the line's own."""
    logging.getLogger("clerksync.server").info(
        "delivery id=%s type=%s object=%s user=%s outcome=%s status=%d ms=%.1f%s",
        svix_id,
        event_type,
        object_id,
        user_id,
        outcome,
        status,
        duration_ms,
        f" error={error!r}" if error else "",
        extra={
            "delivery": {
                "id": svix_id,
                "type": event_type,
                "objectId": object_id,
                "userId": user_id,
                "outcome": outcome,
                "status": status,
                "durationMs": round(duration_ms, 2),
                "error": error,
            }
        },
    )


class JsonLines(logging.Formatter):
    """One JSON object per line, whoever logs (clerksync, uvicorn, asyncio); a delivery's
    fields at the top level, a traceback as one string field, never as lines of its own."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        delivery = getattr(record, "delivery", None)
        if delivery:
            entry.update(delivery)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class RepeatLimit(logging.Filter):
    """At most ``burst`` lines per message template per ``window`` seconds; then one line
    saying how many were left out. Hostile traffic makes uvicorn warn once per request
    ("Invalid HTTP request received.", "Exceeded concurrency limit."): that must not
    become an unbounded log."""

    def __init__(self, *, burst: int = 20, window: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._seen: dict[str, list[float]] = {}  # template -> [window start, count]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "delivery", None):
            return True  # deliveries are sampled where they are made
        key = f"{record.name}:{record.msg}"[:200]
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or now - seen[0] >= self.window:
                left_out = int(seen[1]) - self.burst if seen else 0
                if len(self._seen) > 1000:
                    self._seen.clear()
                self._seen[key] = [now, 1]
                if left_out > 0:
                    record.msg = f"{record.msg} ({left_out} more like this were not logged)"
                return True
            seen[1] += 1
            return seen[1] <= self.burst


LOGGERS = ("clerksync", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "py.warnings")


def configure_logging(*, json_lines: bool) -> None:
    """One handler for clerksync's, uvicorn's and asyncio's loggers (and warnings), so
    ``--log-json`` output is JSON on every line."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLines()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RepeatLimit())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
    logging.getLogger("clerksync").setLevel(logging.INFO)
    for name in LOGGERS[1:]:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)
