"""The injectable clock: a ManualClock moves only when told to, and the parts that wait (the
sweeper between sweeps, sending between throttled e-mails) wait on the application's clock."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime
from pathlib import Path
from unittest import mock

import pytest
from conftest import import_file, login_admin, sample, wait_for_jobs

from bulkimport import clock as clocks
from bulkimport.clock import SYSTEM_CLOCK, ManualClock, clock_of, utcnow


def test_a_manual_clock_moves_only_when_told():
    manual = ManualClock(datetime(2030, 1, 1, 12, 0))
    start = manual.monotonic()
    manual.sleep(90)  # returns at once
    manual.advance(minutes=1)
    assert manual.now() == datetime(2030, 1, 1, 12, 2, 30)
    assert manual.monotonic() - start == 150
    manual.set(datetime(2030, 1, 2))
    with pytest.raises(ValueError, match="does not go back"):
        manual.set(datetime(2030, 1, 1))


def test_the_application_clock_is_the_one_it_was_given(app, clock):
    assert clock_of(app) is clock
    with app.app_context():
        assert utcnow() == clock.now()
        clock.advance(hours=2)
        assert utcnow() == clock.now() and isinstance(utcnow(), datetime)
    assert clocks.clock() is SYSTEM_CLOCK  # outside an application: the real time


def test_a_waiting_thread_wakes_when_the_clock_has_moved_or_it_is_stopped():
    manual = ManualClock()
    stop = threading.Event()
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(manual.wait(stop, 60)))
    waiter.start()
    manual.advance(59)
    waiter.join(0.2)
    assert waiter.is_alive()  # a second of the clock is still to go
    manual.advance(1)
    waiter.join(30)
    assert woke == [False]
    waiter = threading.Thread(target=lambda: woke.append(manual.wait(stop, 60)))
    waiter.start()
    stop.set()
    waiter.join(30)
    assert woke == [False, True]


def test_the_sweeper_sweeps_at_once_then_at_every_interval_of_the_clock(app_factory, clock,
                                                                       monkeypatch):
    from bulkimport import sweep

    app = app_factory(MAIL_SWEEP_SECONDS=300)  # far longer than the real waits below
    swept = threading.Semaphore(0)
    monkeypatch.setattr(sweep, "sweep", swept.release)
    sweeper = sweep.Sweeper(app)
    sweeper.start()
    try:
        assert swept.acquire(timeout=30)  # at start-up
        clock.advance(299)
        assert not swept.acquire(timeout=0.2)  # not before the interval has passed
        clock.advance(1)
        assert swept.acquire(timeout=30)
    finally:
        sweeper.stopped.set()
        sweeper.join(30)
    assert not sweeper.is_alive()


def test_a_throttled_chunk_waits_on_the_clock(app_factory, clock, monkeypatch):
    """A send-rate wait inside a chunk sleeps on the application's clock: with a ManualClock
    it moves the clock on instead of holding the test."""
    from bulkimport.mailing import sending
    from bulkimport.sweep import sweep

    waits = itertools.chain([0.0, 12.0], itertools.repeat(0.0))  # the second e-mail waits 12 s

    class Throttle:
        def reserve(self):
            return next(waits)

    throttle = Throttle()
    monkeypatch.setattr(sending.send_rate_limit, "current", lambda: throttle)
    app = app_factory(MAIL_SERVER="")
    with mock.patch("bulkimport.importing.submission.wake"):  # sent below, not at the import
        import_file(login_admin(app), sample("minimal.csv"))
    before = clock.monotonic()
    with app.app_context():
        sweep()
    wait_for_jobs(app)
    assert clock.monotonic() - before == 12.0
    assert len(list((Path(app.instance_path) / "outbox").glob("*.eml"))) == 3
