"""The RQ worker `nudger worker` runs: send jobs in its own warm process, others forked."""

from __future__ import annotations

from collections import Counter

from rq import SimpleWorker, Worker
from rq.job import Job
from rq.queue import Queue
from rq.results import Result

from nudger.queue import SEND_QUEUE


class NudgerWorker(Worker):
    """Run send jobs in this process and fork a work horse for every other job.

    A forked job starts cold: a new database connection, empty statement and
    VTIMEZONE caches (~20 ms per time zone), and everything it computes is
    thrown away when it exits. Send jobs are short, many and all alike, so
    they run here, where those stay warm; a job timeout still interrupts one
    (RQ's alarm signal), and a worker that dies mid-batch leaves its rows to
    the lease. Imports and other heavy, rare jobs keep the fork's isolation.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: jobs done and failed, and every send job's outcomes (sent, failed, ...)
        self.tally: Counter[str] = Counter()

    def execute_job(self, job: Job, queue: Queue) -> None:
        if queue.name == SEND_QUEUE:
            SimpleWorker.execute_job(self, job, queue)  # type: ignore[arg-type]
        else:
            super().execute_job(job, queue)
        self._count(job, queue.name == SEND_QUEUE)

    def _count(self, job: Job, is_send: bool) -> None:
        """Add a finished job to the tally, from its result (a forked job's is only in Redis)."""
        result = job.latest_result()
        if result is not None and result.type != Result.Type.SUCCESSFUL:
            self.tally["failed_jobs"] += 1
            return
        self.tally["jobs"] += 1
        value = result.return_value if result is not None else None
        if is_send and isinstance(value, dict):
            self.tally.update({f"emails_{k}": int(v) for k, v in value.items()})

    def unsubscribe(self) -> None:
        """Leave the command channel without waiting up to a minute for its thread.

        RQ stops its pubsub thread with redis-py's stop(), which waits for the
        thread without a bound (redis-py 8), and a thread that has just been
        unsubscribed can sleep for RQ's whole 60-second poll: now and then
        Ctrl-C took a minute. The thread is a daemon; a bounded wait will do.
        """
        if not self.pubsub_thread:
            return
        self.pubsub.unsubscribe()
        try:
            self.pubsub_thread.stop(timeout=1)
        except TypeError:  # redis-py before 8: stop() does not wait at all
            self.pubsub_thread.stop()
            self.pubsub_thread.join(timeout=1)
        self.pubsub.close()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # Nobody beats the heart while an inline job runs: cover its whole timeout.
        if job.origin == SEND_QUEUE:
            return SimpleWorker.get_heartbeat_ttl(self, job, working_time)  # type: ignore[arg-type]
        return super().get_heartbeat_ttl(job, working_time)
