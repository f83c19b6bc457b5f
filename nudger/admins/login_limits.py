"""Sign-in limits: a few attempts per account and per network, then a wait.

An attempt is counted *before* the password or code is checked, and the count
and the decision are one step (a Lua script in Redis, an upsert in the
database); read-then-increment let thirty concurrent guesses all reach the
password check. A check that passes gives its attempt back, so only failures
use up the limit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from datetime import datetime, timedelta

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from nudger.models import LoginCount

LOGIN_LIMIT = 5  # failed attempts per IP and per email ...
LOGIN_WINDOW = 15 * 60  # ... within this many seconds
log = logging.getLogger(__name__)


def _upsert(conn: Connection):
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(LoginCount)


class LoginLimiter:
    """Count sign-in attempts per IP and per email in a moving window in Redis.

    If Redis is unreachable the database counts instead (a window from the first
    attempt): a limiter that let everything through whenever Redis is down would
    let guesses through at the speed of argon2.
    """

    def __init__(
        self, redis: Redis, engine: Engine, limit: int = LOGIN_LIMIT, window: int = LOGIN_WINDOW
    ) -> None:
        self.limit, self.window, self.engine = limit, window, engine
        self.item = RateLimitItemPerSecond(limit, window)
        self.storage = RedisStorage(
            "redis://",  # the connection comes from the pool, so the URL is not used
            connection_pool=redis.connection_pool,
            key_prefix="nudger:login",
            wrap_exceptions=True,
        )
        self.moving = MovingWindowRateLimiter(self.storage)

    @staticmethod
    def keys(ip: str, email: str) -> list[tuple[str, str]]:
        """Return the counters an attempt of this IP and email counts on (the IP's first)."""
        return [("ip", ip), ("email", email.strip().lower())]

    def attempt(self, ip: str, email: str, now: datetime) -> int:
        """Count one attempt; return 0 if it may be checked, else the seconds to wait.

        A refused attempt counts on neither counter: an account locked by someone
        else's guesses must not lock out the network its owner signs in from.
        """
        keys = self.keys(ip, email)
        try:
            return self._attempt_redis(keys)
        except (StorageError, RedisError):
            log.warning("sign-in limits counted in the database: Redis is unreachable")
            return self._attempt_db(keys, now)

    def passed(self, ip: str, email: str, now: datetime) -> None:
        """Give back the attempt of a password or code that was right."""
        try:
            for key in self.keys(ip, email):
                self._give_back_redis(key)
        except (StorageError, RedisError):
            self._give_back_db(self.keys(ip, email))

    def forget(self, email: str, now: datetime) -> None:
        """Forget an account's attempts once it is signed in (the IP's stay: it may be guessing
        other accounts)."""
        key = self.keys("", email)[1]
        with contextlib.suppress(StorageError):
            self.moving.clear(self.item, *key)
        with self.engine.begin() as conn:
            conn.execute(delete(LoginCount).where(LoginCount.key == ":".join(key)))

    # --- Redis: a moving window through `limits` ------------------------------------

    def _attempt_redis(self, keys: list[tuple[str, str]]) -> int:
        taken = []
        for key in keys:
            if not self.moving.hit(self.item, *key):
                for done in taken:
                    self._give_back_redis(done)
                reset = self.moving.get_window_stats(self.item, *key).reset_time
                return max(1, math.ceil(reset - time.time()))
            taken.append(key)
        return 0

    def _give_back_redis(self, key: tuple[str, str]) -> None:
        # `limits` has no call to undo a hit; its moving window is a Redis list of
        # timestamps, newest first, so dropping the newest undoes one hit and keeps
        # the window's end where it was.
        name = self.storage.prefixed_key(self.item.key_for(*key))
        self.storage.get_connection().lpop(name)

    # --- the database: one upsert per counter, in one transaction -------------------

    def _attempt_db(self, keys: list[tuple[str, str]], now: datetime) -> int:
        cutoff = now - timedelta(seconds=self.window)
        stale = LoginCount.window_start <= cutoff
        with self.engine.connect() as conn:
            for kind, value in keys:
                insert = _upsert(conn).values(key=f"{kind}:{value}", window_start=now, attempts=1)
                # Both SET clauses read the row as it was: a stale window starts again.
                statement = insert.on_conflict_do_update(
                    index_elements=["key"],
                    set_={
                        "attempts": case((stale, 1), else_=LoginCount.attempts + 1),
                        "window_start": case((stale, now), else_=LoginCount.window_start),
                    },
                ).returning(LoginCount.attempts, LoginCount.window_start)
                attempts, started = conn.execute(statement).one()
                if attempts > self.limit:
                    conn.rollback()  # a refused attempt counts on neither counter
                    started = started if started.tzinfo else started.replace(tzinfo=now.tzinfo)
                    left = started + timedelta(seconds=self.window) - now
                    return max(1, math.ceil(left.total_seconds()))
            conn.commit()
        return 0

    def _give_back_db(self, keys: list[tuple[str, str]]) -> None:
        names = [f"{kind}:{value}" for kind, value in keys]
        with self.engine.begin() as conn:
            conn.execute(
                update(LoginCount)
                .where(LoginCount.key.in_(names), LoginCount.attempts > 0)
                .values(attempts=LoginCount.attempts - 1)
            )
