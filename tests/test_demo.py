"""The demo's own worker: Ctrl-C during a job finishes the job, then stops the demo."""

from __future__ import annotations

import os
import signal

import pytest
from rq import SimpleWorker

from nudger.demo import drain
from nudger.queue import DEFAULT_QUEUE, queue


def interrupted_job() -> str:
    """Stand for a send job during which the person presses Ctrl-C."""
    os.kill(os.getpid(), signal.SIGINT)
    return "finished"


def test_ctrl_c_during_a_job_lets_it_finish_then_stops_the_demo(settings):
    q = queue(settings, DEFAULT_QUEUE)
    q.empty()
    job = q.enqueue(interrupted_job)
    worker = SimpleWorker([q], connection=q.connection)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt):
        drain(worker)
    assert job.return_value(refresh=True) == "finished"
    # RQ's handlers are gone: the next Ctrl-C is the demo's, not a StopRequested.
    assert {s: signal.getsignal(s) for s in before} == before


def test_draining_an_empty_queue_leaves_the_signal_handlers_as_they_were(settings):
    q = queue(settings, DEFAULT_QUEUE)
    q.empty()
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    drain(SimpleWorker([q], connection=q.connection))
    assert {s: signal.getsignal(s) for s in before} == before
