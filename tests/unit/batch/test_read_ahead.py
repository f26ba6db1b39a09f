"""The file export's read-ahead: pages in order, errors passed on, and a stop that can never
pass for the end of the range."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from xavyo_siem.batch.control import Stopped
from xavyo_siem.batch.files import read_ahead


def test_every_page_arrives_in_order_and_the_end_is_an_end() -> None:
    """Without a stop, read_ahead hands over every page, in order, and then ends normally."""
    pages = [[n, n + 1] for n in range(0, 40, 2)]
    assert list(read_ahead(iter(pages), threading.Event())) == pages


def test_a_stop_before_the_pages_end_raises_stopped() -> None:
    """A stop while pages remain raises Stopped: the writer must not finish a partial export
    as if its range had ended (the bug behind a stopped export marked completed)."""
    stop = threading.Event()

    def pages() -> Iterator[int]:
        yield 1
        stop.wait()  # the database is slow; meanwhile the process is asked to stop
        yield 2

    reading = read_ahead(pages(), stop)
    assert next(reading) == 1
    stop.set()
    with pytest.raises(Stopped):
        next(reading)


def test_an_error_while_reading_reaches_the_writer() -> None:
    """An exception raised by the page reader is raised to the caller, after the pages before
    it."""

    def pages() -> Iterator[int]:
        yield 1
        raise OSError("the store went away")

    reading = read_ahead(pages(), threading.Event())
    assert next(reading) == 1
    with pytest.raises(OSError, match="the store went away"):
        next(reading)
