"""The one clock of the application: every time-dependent rule (login slow-down and lock, batch
and password expiry, retries, leases, the mail throttle) reads the time from here.

An application keeps its clock in `app.extensions["bulkimport.clock"]` (the system clock unless
`create_app` was given `CLOCK`), so that tests set the time instead of sleeping or racing it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, has_app_context

EXTENSION_KEY = "bulkimport.clock"


class SystemClock:
    """The real time: naive UTC for the database, a monotonic counter for intervals."""

    def now(self) -> datetime:
        """The current time in UTC, naive, as stored in the database."""
        return datetime.now(UTC).replace(tzinfo=None)

    def monotonic(self) -> float:
        """Seconds on a counter that never goes back, for measuring intervals."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of real time."""
        time.sleep(max(seconds, 0))

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to `seconds` for `event` (a stop signal); returns whether it was set."""
        return event.wait(max(seconds, 0))


class ManualClock(SystemClock):
    """A clock that moves only when told to (tests): `sleep` advances it instead of waiting."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 12, 1, 9, 0, 0)
        self._monotonic = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The time the clock was set to."""
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        """A counter that moves with `advance`."""
        with self._lock:
            return self._monotonic

    def sleep(self, seconds: float) -> None:
        """Advance the clock by `seconds` at once."""
        self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until the clock has been moved `seconds` on (by someone else: a waiting thread,
        such as the sweeper, must not move the time of the test) or `event` is set."""
        until = self.monotonic() + seconds
        while self.monotonic() < until:
            if event.wait(0.01):  # checks in real time, since nothing signals an advance
                return True
        return event.is_set()

    def advance(self, seconds: float = 0, **delta) -> None:
        """Move the clock forward by `seconds` (or by `timedelta` keywords such as minutes=5)."""
        step = timedelta(seconds=seconds, **delta)
        with self._lock:
            self._now += step
            self._monotonic += step.total_seconds()

    def set(self, moment: datetime) -> None:
        """Set the clock to `moment` (naive UTC); it must not go back."""
        with self._lock:
            if moment < self._now:
                raise ValueError("a clock does not go back")
            self._monotonic += (moment - self._now).total_seconds()
            self._now = moment


SYSTEM_CLOCK = SystemClock()


def clock_of(app: Flask) -> SystemClock:
    """The clock of `app`, for threads that hold the application but no context (the sweeper)."""
    return app.extensions.get(EXTENSION_KEY, SYSTEM_CLOCK)


def clock() -> SystemClock:
    """The clock of the current application, or the system clock outside one."""
    if has_app_context():
        return clock_of(current_app)
    return SYSTEM_CLOCK


def utcnow() -> datetime:
    """The current time in UTC, naive, as stored in the database, from the application's clock."""
    return clock().now()
