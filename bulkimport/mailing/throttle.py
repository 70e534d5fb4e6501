"""The global send-rate limit: at most N e-mails in any sliding minute, across all workers.

With Redis, every worker shares one sorted set of send times, checked and updated by a Lua
script so that the check and the reservation are one atomic step. Without Redis there is only
one process, and a lock-protected list kept by the application (not by the class, so that two
applications in one process, such as two tests, do not share it) does the same.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque

from flask import Flask, current_app

from ..clock import SYSTEM_CLOCK, clock_of

# A little more than a minute: a reservation precedes the SMTP exchange by a few milliseconds to
# a few seconds, so counting a slightly longer window keeps accepted e-mails under the limit in
# any minute as the server sees them.
WINDOW_SECONDS = 62.0
KEY = "bulkimport:mail:sent"
EXTENSION = "bulkimport.throttle"  # the application's LocalThrottle in app.extensions

_RESERVE = """
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
    tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, member)
  redis.call('EXPIRE', key, math.ceil(window) + 1)
  return '0'
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class RedisThrottle:
    """Sliding-window limit shared by every process that uses the same Redis."""

    def __init__(self, redis, per_minute: int):
        self.redis = redis
        self.per_minute = per_minute
        self.script = redis.register_script(_RESERVE)

    def reserve(self) -> float:
        """Take a slot now and return 0, or return the seconds to wait before asking again."""
        if self.per_minute <= 0:
            return 0.0
        now = self.redis.time()
        seconds = now[0] + now[1] / 1e6  # Redis's clock: the same for every worker
        wait = self.script(keys=[KEY], args=[seconds, WINDOW_SECONDS, self.per_minute,
                                             f"{seconds}:{uuid.uuid4().hex}"])
        return float(wait)


class LocalThrottle:
    """The same limit inside one process, for the embedded mode without Redis."""

    def __init__(self, per_minute: int, clock=None):
        self.per_minute = per_minute
        self.clock = clock or SYSTEM_CLOCK  # the application's: tests move it, never sleep
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()

    def reserve(self) -> float:
        """Take a slot now and return 0, or return the seconds to wait before asking again."""
        if self.per_minute <= 0:
            return 0.0
        with self._lock:
            now = self.clock.monotonic()
            while self._sent and self._sent[0] <= now - WINDOW_SECONDS:
                self._sent.popleft()
            if len(self._sent) < self.per_minute:
                self._sent.append(now)
                return 0.0
            return self._sent[0] + WINDOW_SECONDS - now


class SendRateLimit:
    """Flask extension: the send-rate limit of an application, shared through Redis when it is
    configured, else kept in the application itself."""

    def __init__(self, app: Flask | None = None):
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Give `app` its own in-process sliding window."""
        app.extensions[EXTENSION] = LocalThrottle(app.config["MAIL_RATE_PER_MINUTE"],
                                                  clock_of(app))

    def current(self) -> RedisThrottle | LocalThrottle:
        """The limit of the current application: Redis's (every worker) or its own."""
        app = current_app._get_current_object()
        if app.config["REDIS_URL"]:
            from ..background import redis_connection

            return RedisThrottle(redis_connection(app), app.config["MAIL_RATE_PER_MINUTE"])
        return app.extensions[EXTENSION]


# Unbound, like the extensions of bulkimport.extensions; bound in create_app.
send_rate_limit = SendRateLimit()
