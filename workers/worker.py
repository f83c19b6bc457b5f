"""The RQ worker `nudger worker` runs: send jobs in its own warm process, others forked."""

from __future__ import annotations

from rq import SimpleWorker, Worker
from rq.job import Job
from rq.queue import Queue

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

    def execute_job(self, job: Job, queue: Queue) -> None:
        if queue.name == SEND_QUEUE:
            SimpleWorker.execute_job(self, job, queue)  # type: ignore[arg-type]
        else:
            super().execute_job(job, queue)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # Nobody beats the heart while an inline job runs: cover its whole timeout.
        if job.origin == SEND_QUEUE:
            return SimpleWorker.get_heartbeat_ttl(self, job, working_time)  # type: ignore[arg-type]
        return super().get_heartbeat_ttl(job, working_time)
