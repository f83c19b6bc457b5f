"""CSV uploads from the admin console: keep the file, check it, then enrol, with progress.

The check and the commit are `nudger.roster.import_roster`, the same call as
`nudger import` (with and without --dry-run). Files up to INLINE_MAX_ROWS rows
run inside the request (well under a second); bigger ones run as an RQ job on
the default queue, and the page polls the upload's state, so no request waits
on a 100,000-row file.

Between the check and the commit the file lives in the instance folder under
uploads/<id>.csv, with its state in uploads/<id>.json; the file is deleted once
committed, and abandoned uploads after UPLOAD_TTL. A worker running import jobs
must therefore see the same instance folder as the web app.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine
from sqlmodel import Session

from nudger.config import Settings
from nudger.roster import ImportResult, RowError, import_roster, write_error_csv

log = logging.getLogger(__name__)

INLINE_MAX_ROWS = 5000
UPLOAD_TTL = timedelta(days=1)
RUNNING = ("checking", "committing")
_ID = re.compile(r"[A-Za-z0-9_-]{20,64}")


@dataclass
class Upload:
    """One uploaded file and where it is on its way from preview to commit."""

    id: str
    filename: str
    journey_slug: str
    actor: str
    created_at: str
    size: int
    rows_estimate: int
    state: str = "uploaded"  # uploaded|checking|checked|committing|committed|failed
    phase: str = ""
    progress: float = 0.0
    job_id: str | None = None
    error: str | None = None
    started: float = 0.0
    runs: int = 0
    summary: dict[str, Any] = field(default_factory=dict)  # counts of the last run

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    @property
    def inline(self) -> bool:
        return self.rows_estimate <= INLINE_MAX_ROWS


class UploadStore:
    """The uploads folder: one CSV, one state file and one result per run."""

    def __init__(self, instance_path: Path) -> None:
        self.dir = Path(instance_path) / "uploads"

    def _path(self, upload_id: str, suffix: str) -> Path:
        if not _ID.fullmatch(upload_id):
            raise KeyError(upload_id)
        return self.dir / f"{upload_id}{suffix}"

    def csv_path(self, upload_id: str) -> Path:
        return self._path(upload_id, ".csv")

    def create(
        self, stream: BinaryIO, filename: str, journey_slug: str, actor: str, now: datetime
    ) -> Upload:
        """Save an uploaded file under a fresh random id."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cleanup(now)
        upload_id = secrets.token_urlsafe(18)
        size, lines = 0, 0
        with open(self.csv_path(upload_id), "wb") as out:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
        upload = Upload(
            id=upload_id,
            filename=Path(filename or "upload.csv").name[:200],
            journey_slug=journey_slug,
            actor=actor,
            created_at=now.isoformat(),
            size=size,
            rows_estimate=max(lines, 1),
        )
        self.save(upload)
        return upload

    def get(self, upload_id: str) -> Upload | None:
        try:
            path = self._path(upload_id, ".json")
        except KeyError:
            return None
        if not path.exists():
            return None
        return Upload(**json.loads(path.read_text()))

    def save(self, upload: Upload) -> None:
        """Write the state atomically: the page may read it while a job writes it."""
        path = self._path(upload.id, ".json")
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(upload)))
        os.replace(tmp, path)

    def save_result(self, upload: Upload, kind: str, result: ImportResult) -> None:
        path = self._path(upload.id, f".{kind}.json")
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result.to_json()))
        os.replace(tmp, path)

    def result(self, upload_id: str, kind: str) -> ImportResult | None:
        """Return the result of the upload's check ("preview") or commit ("commit")."""
        path = self._path(upload_id, f".{kind}.json")
        if not path.exists():
            return None
        return result_from_json(json.loads(path.read_text()))

    def committable(self, upload: Upload) -> bool:
        """Say whether an upload may be enrolled: it was checked and every row is sound."""
        preview = self.result(upload.id, "preview")
        return upload.state == "checked" and preview is not None and preview.ok

    def error_csv(self, upload_id: str) -> str | None:
        """Return the rejected rows with an error column, or None if there are none."""
        result = self.result(upload_id, "preview")
        path = self.csv_path(upload_id)
        if result is None or not result.errors or not path.exists():
            return None
        return write_error_csv(result, path)

    def delete_file(self, upload_id: str) -> None:
        self.csv_path(upload_id).unlink(missing_ok=True)

    def discard(self, upload_id: str) -> None:
        for suffix in (".csv", ".json", ".preview.json", ".commit.json"):
            self._path(upload_id, suffix).unlink(missing_ok=True)

    def cleanup(self, now: datetime) -> int:
        """Delete uploads older than UPLOAD_TTL; return how many files went."""
        if not self.dir.exists():
            return 0
        cutoff = (now - UPLOAD_TTL).timestamp()
        gone = 0
        for path in self.dir.iterdir():
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                gone += 1
        return gone


def result_from_json(data: dict[str, Any]) -> ImportResult:
    """Rebuild an ImportResult from its to_json() form."""
    counts = {k: data[k] for k in (
        "rows", "people_created", "people_updated", "enrolments_created", "unchanged",
        "dry_run", "batch_id",
    )}  # fmt: skip
    return ImportResult(
        errors=[RowError(**e) for e in data["errors"]],
        warnings=[RowError(**w) for w in data["warnings"]],
        **counts,
    )


class _Progress(io.RawIOBase):
    """A file that reports how far it has been read, at most twice a second."""

    def __init__(self, raw: BinaryIO, total: int, report: Callable[[float], None]) -> None:
        super().__init__()
        self._raw, self._total, self._report = raw, max(total, 1), report
        self._read, self._last = 0, 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._read += len(data)
        if time.monotonic() - self._last > 0.5:
            self._last = time.monotonic()
            self._report(self._read / self._total)
        return len(data)


def run_upload(
    settings: Settings,
    engine: Engine,
    store: UploadStore,
    upload_id: str,
    dry_run: bool,
    now: datetime,
) -> dict[str, Any]:
    """Check (dry run) or commit an upload through import_roster; record progress and result."""
    upload = store.get(upload_id)
    if upload is None:
        raise LookupError(f"upload {upload_id} is gone (discarded or expired)")
    path = store.csv_path(upload_id)
    if not path.exists():
        upload.state, upload.error = "failed", "the uploaded file is gone: upload it again"
        store.save(upload)
        return {"ok": False}
    upload.state = "checking" if dry_run else "committing"
    reading = "Reading and checking rows" if dry_run else "Checking rows again before writing"
    upload.phase, upload.progress, upload.error, upload.started = reading, 0.0, None, time.time()
    store.save(upload)
    share = 0.9 if dry_run else 0.6

    def report(fraction: float) -> None:
        upload.progress = round(share * fraction, 3)
        if fraction >= 1:
            upload.phase = "Comparing with the database" if dry_run else "Writing enrolments"
        store.save(upload)

    try:
        with open(path, "rb") as raw, Session(engine, expire_on_commit=False) as session:
            source = io.BufferedReader(_Progress(raw, upload.size, report), 1 << 16)
            result = import_roster(
                session,
                settings,
                source,
                filename=upload.filename,
                journey_slug=upload.journey_slug or None,
                dry_run=dry_run,
                now=now,
                actor=upload.actor,
            )
    except Exception:
        upload.state, upload.phase = "failed", ""
        # The page shows this; the exception (its SQL and the file's values) goes to the log.
        upload.error = "the import stopped unexpectedly; nothing was written"
        store.save(upload)
        raise  # RQ (or the web error page) records the details
    store.save_result(upload, "preview" if dry_run else "commit", result)
    upload.summary = {k: v for k, v in result.to_json().items() if k not in ("errors", "warnings")}
    upload.summary.update(errors=len(result.errors), warnings=len(result.warnings))
    upload.progress, upload.phase, upload.runs = 1.0, "", upload.runs + 1
    if dry_run:
        upload.state = "checked"
    elif result.ok:
        upload.state = "committed"
        store.delete_file(upload_id)
    else:
        # The database changed since the check (say, a journey was removed): show why.
        upload.state = "checked"
        store.save_result(upload, "preview", result)
    store.save(upload)
    return upload.summary


def start(
    settings: Settings,
    engine: Engine,
    store: UploadStore,
    upload: Upload,
    dry_run: bool,
    now: datetime,
) -> str:
    """Run a small upload now, or enqueue a job for a big one; return "done" or "queued"."""
    if upload.inline:
        run_upload(settings, engine, store, upload.id, dry_run, now)
        return "done"
    from nudger.queue import DEFAULT_QUEUE, queue

    upload.state = "checking" if dry_run else "committing"
    upload.phase, upload.progress, upload.error = "Waiting for a worker", 0.0, None
    upload.job_id = f"import-{upload.id}-{'check' if dry_run else 'commit'}-{upload.runs}"
    store.save(upload)
    try:
        queue(settings, DEFAULT_QUEUE).enqueue_call(
            "workers.jobs.import_csv",
            args=(upload.id, dry_run),
            job_id=upload.job_id,
            timeout=3600,
            result_ttl=3600,
            failure_ttl=7 * 86400,
            description=f"{'check' if dry_run else 'import'} {upload.filename}",
        )
    except Exception:
        upload.state = "uploaded" if dry_run else "checked"
        upload.error = "the job queue (Redis) is not reachable: try again in a minute"
        store.save(upload)
        raise
    return "queued"


def refresh(settings: Settings, store: UploadStore, upload: Upload) -> Upload:
    """Notice a job that died without recording it (worker killed, job failed or lost)."""
    if not upload.running or not upload.job_id:
        return upload
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    from nudger.queue import redis_connection

    try:
        status = Job.fetch(upload.job_id, connection=redis_connection(settings)).get_status()
    except NoSuchJobError:
        status = None
    except Exception:  # Redis unreachable: say nothing new rather than guess
        return upload
    waiting = (JobStatus.CREATED, JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
               JobStatus.SCHEDULED)  # fmt: skip
    if status in waiting:
        return upload
    latest = store.get(upload.id) or upload  # it may have finished since we read it
    if latest.running:
        latest.state = "failed"
        latest.error = "the import job stopped before it finished; nothing was written"
        store.save(latest)
    return latest
