"""Requests per token per window, counted in Redis with `limits`, and the RateLimit headers.

The headers follow the IETF draft "RateLimit header fields for HTTP"
(draft-ietf-httpapi-ratelimit-headers-10): `RateLimit-Policy` says the quota
(`q` requests per `w` seconds) and `RateLimit` what is left (`r`) and when the
window starts again (`t` seconds).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis import Redis
from redis.exceptions import RedisError

POLICY = "per-token"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One request's count: allowed or not, what is left, and seconds until the window resets."""

    allowed: bool
    limit: int
    window: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """Return the RateLimit-Policy and RateLimit header fields."""
        return {
            "RateLimit-Policy": f'"{POLICY}";q={self.limit};w={self.window}',
            "RateLimit": f'"{POLICY}";r={self.remaining};t={self.reset}',
        }


class ApiLimiter:
    """Count requests per caller (a token, or an address for requests without a valid one)."""

    def __init__(self, redis: Redis, limit: int, window: int = 60) -> None:
        self.limit, self.window = limit, window
        self.item = RateLimitItemPerSecond(limit, window)
        storage = RedisStorage(
            "redis://",  # the connection comes from the pool, so the URL is not used
            connection_pool=redis.connection_pool,
            key_prefix="nudger:api",
            wrap_exceptions=True,
        )
        self.fixed = FixedWindowRateLimiter(storage)

    def hit(self, key: str) -> Verdict | None:
        """Count one request; None when Redis cannot count (the request goes ahead, unlimited)."""
        try:
            allowed = self.fixed.hit(self.item, key)
            stats = self.fixed.get_window_stats(self.item, key)
        except (StorageError, RedisError):
            log.warning("API rate limits not counted: Redis is unreachable")
            return None
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Verdict(allowed, self.limit, self.window, stats.remaining, reset)
