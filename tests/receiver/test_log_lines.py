"""``BatchedLines``: a busy receiver's delivery lines reach the stream a batch per write,
soon; a warning at once; nothing is left behind at exit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clerksync.receiver.logs import BatchedLines, PlainLines


class Stream:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return "".join(self.writes).splitlines()


@pytest.fixture(autouse=True)
def loggers_restored() -> Iterator[None]:
    """What ``logger_to`` changes on a logger is put back after each test."""
    names = ("test.batched.info", "test.batched.close", "clerksync.server")
    saved = {
        n: (list(lg.handlers), lg.propagate, lg.level)
        for n in names
        if (lg := logging.getLogger(n))
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


def logger_to(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_info_lines_go_out_together_soon_and_a_warning_at_once() -> None:
    stream = Stream()
    handler = BatchedLines(stream, delay=0.1)
    handler.setFormatter(PlainLines())
    log = logger_to(handler, "test.batched.info")
    for n in range(50):
        log.info("delivery %d", n)
    assert stream.writes == []  # waiting for the batch
    wait_for(lambda: len(stream.lines()) == 50)
    assert len(stream.writes) == 1
    assert stream.lines()[-1].endswith("INFO delivery 49")
    log.info("one more")
    log.warning("the database is away")  # out at once, after what waited
    last = [line.split(" ", 1)[1] for line in stream.lines()[-2:]]
    assert last == ["INFO one more", "WARNING the database is away"]


def test_close_writes_what_waits() -> None:
    stream = Stream()
    handler = BatchedLines(stream, delay=60)
    handler.setFormatter(PlainLines())
    log = logger_to(handler, "test.batched.close")
    log.info("last words")
    handler.close()  # what logging.shutdown does at exit, after a flush
    assert [line.split(" ", 1)[1] for line in stream.lines()] == ["INFO last words"]


def test_routine_lines_past_the_rate_are_counted_and_said_once(
    caplog: Any,
) -> None:
    from clerksync.receiver.logs import RoutineLines

    now = [100.2]
    lines = RoutineLines(3, clock=lambda: now[0])
    admitted = [lines.admit("applied") for _ in range(5)] + [lines.admit("duplicate")]
    assert admitted == [True, True, True, False, False, False]
    with caplog.at_level(logging.INFO, logger="clerksync.server"):
        lines.report()  # what its timer does once the second is over
        lines.report()  # nothing more to say
    said = [r.getMessage() for r in caplog.records if r.name == "clerksync.server"]
    assert len(said) == 1 and "2 applied, 1 duplicate" in said[0]
    now[0] = 101.0  # the next second: lines again
    assert lines.admit("applied")


def test_the_summary_line_is_never_capped_as_a_repeat() -> None:
    """Once a second under sustained load: past ``RepeatLimit``'s 20 a minute all the same."""
    from clerksync.receiver.logs import RepeatLimit, RoutineLines

    stream = Stream()
    handler = BatchedLines(stream, delay=60)
    handler.setFormatter(PlainLines())
    handler.addFilter(RepeatLimit())
    # this thread's lines only: a receiver an earlier test in this process left running
    # (its summary timer) logs to the same logger
    here = threading.get_ident()
    handler.addFilter(lambda record: record.thread == here)
    logger_to(handler, "clerksync.server")
    lines = RoutineLines(0, clock=lambda: 0.0)
    for _ in range(30):
        lines.admit("applied")
        lines.report()
    handler.flush()
    assert len(stream.lines()) == 30
