"""The receiver's logging: one handler for clerksync's, uvicorn's and asyncio's loggers.

``serve --log-json`` makes every line one JSON object (a delivery's fields at the top
level); either way a message repeated by hostile traffic is capped (``RepeatLimit``), so
the log stays bounded whatever is sent. Routine deliveries (applied, duplicate, stale,
ignored) get a line each up to ``ROUTINE_PER_SECOND`` a second, then one line saying how
many more there were (``RoutineLines``): a busy receiver's log stays readable and costs
it little; every delivery is in the delivery log (``clerksync events``) all the same.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

from clerksync.display import visible

#: routine delivery lines per second before the rest are counted (``RoutineLines``)
ROUTINE_PER_SECOND = 20

ROUTINE = frozenset({"applied", "duplicate", "stale", "ignored"})

log = logging.getLogger("clerksync.server")


class RoutineLines:
    """Admits ``per_second`` routine lines a second; counts the rest, and once that second
    is over says how many (one line, from a timer: a receiver gone quiet says it too)."""

    def __init__(
        self, per_second: int = ROUTINE_PER_SECOND, *, clock: Any = time.monotonic
    ) -> None:
        self.per_second = per_second
        self._clock = clock
        self._second = 0
        self._admitted = 0
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, outcome: str) -> bool:
        second = int(self._clock())
        with self._lock:
            if second != self._second:
                self._second, self._admitted = second, 0
            if self._admitted < self.per_second:
                self._admitted += 1
                return True
            if not self._left_out:
                timer = threading.Timer(1.0, self.report)
                timer.daemon = True
                timer.start()
            self._left_out[outcome] = self._left_out.get(outcome, 0) + 1
            return False

    def report(self) -> None:
        with self._lock:
            left_out, self._left_out = self._left_out, {}
        if left_out:
            counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(left_out.items()))
            log.info(
                "deliveries not logged one by one (over %d a second): %s; each is in the "
                "delivery log (clerksync events)",
                self.per_second,
                counts,
                extra={"counted": left_out},  # once a second at most: not a repeat to cap
            )


routine_lines = RoutineLines()


def log_delivery(
    svix_id: str | None,
    event_type: str | None,
    object_id: str | None,
    user_id: str | None,
    outcome: str,
    status: int,
    duration_ms: float,
    error: str | None,
    notes: tuple[str, ...] = (),
) -> None:
    """One line per delivery; with ``--log-json`` its fields are the line's own. ``notes``
    (what was cut to store it: stored all the same, what an end user typed never refuses
    it) make it a warning. Routine ones past ``ROUTINE_PER_SECOND`` are counted instead."""
    if outcome in ROUTINE and not notes and not routine_lines.admit(outcome):
        return
    delivery: dict[str, Any] = {
        "id": svix_id,
        "type": event_type,
        "objectId": object_id,
        "userId": user_id,
        "outcome": outcome,
        "status": status,
        "durationMs": round(duration_ms, 2),
        "error": error,
    }
    if notes:
        delivery["notes"] = list(notes)
    log.log(
        logging.WARNING if notes else logging.INFO,
        "delivery id=%s type=%s object=%s user=%s outcome=%s status=%d ms=%.1f%s%s",
        svix_id,
        event_type,
        object_id,
        user_id,
        outcome,
        status,
        duration_ms,
        f" error={error!r}" if error else "",
        f" notes={'; '.join(notes)!r}" if notes else "",
        extra={"delivery": delivery},
    )


class SecondClock(logging.Formatter):
    """A formatter whose time (whole seconds) is made once per second, not once per line."""

    _last: tuple[tuple[int, str | None], str] = ((-1, None), "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        key = (int(record.created), datefmt)
        last = self._last
        if last[0] != key:
            last = self._last = (key, super().formatTime(record, datefmt))
        return last[1]


class JsonLines(SecondClock):
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
        return json.dumps(entry, default=str)  # escapes every control character


class PlainLines(SecondClock):
    """``time level message``, the message shown by the one rule (``clerksync.display``):
    a delivery's type, a database's error, anything a sender or an end user could have
    written reaches the operator's terminal escaped, and one entry is one line. A traceback
    stays as Python prints it, after the line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return visible(super().formatMessage(record))


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
        if getattr(record, "delivery", None) or getattr(record, "counted", None):
            return True  # deliveries are sampled where they are made, and counted there
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


class BatchedLines(logging.StreamHandler):
    """A stream handler that writes a busy receiver's INFO lines (one per delivery) a batch
    at a time, at most ``delay`` seconds after the first of them: one write to the stream
    instead of one per line. A WARNING or worse goes out at once, with what waits before
    it; ``close`` (at exit) and ``flush`` write what waits."""

    def __init__(self, stream: Any = None, *, delay: float = 0.2) -> None:
        super().__init__(stream)
        self.delay = delay
        self._waiting: list[str] = []
        self._due = threading.Event()
        self._flusher: threading.Thread | None = None

    #: lines held at most: past it they are written at once (memory stays bounded; a stream
    #: that fails says so through ``handleError``, as a plain handler's would)
    MOST_WAITING = 10_000

    def emit(self, record: logging.LogRecord) -> None:  # under the handler's lock
        try:
            self._waiting.append(self.format(record))
            if record.levelno >= logging.WARNING or len(self._waiting) >= self.MOST_WAITING:
                self._write()
            elif len(self._waiting) == 1:
                if self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush_later, name="clerksync-log", daemon=True
                    )
                    self._flusher.start()
                self._due.set()
        except Exception:
            self.handleError(record)

    def _flush_later(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self.delay)
            self._due.clear()
            # a stream that fails (its reader gone) loses this batch; the next one tries again
            with contextlib.suppress(Exception):
                self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write(self) -> None:
        if self._waiting:
            text = self.terminator.join(self._waiting) + self.terminator
            self._waiting.clear()
            self.stream.write(text)
            if hasattr(self.stream, "flush"):
                self.stream.flush()


LOGGERS = ("clerksync", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "py.warnings")


def configure_logging(*, json_lines: bool) -> None:
    """One handler for clerksync's, uvicorn's and asyncio's loggers (and warnings), so
    ``--log-json`` output is JSON on every line."""
    handler = BatchedLines()
    handler.setFormatter(JsonLines() if json_lines else PlainLines())
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
