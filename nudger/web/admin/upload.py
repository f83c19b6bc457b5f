"""Upload learners: check a CSV (preview, errors, warnings), then enrol them in one go.

Small files are checked and committed inside the request; big ones run as a
job and this page shows its progress (see nudger.roster.uploads).
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlmodel import select

from nudger.models import Journey
from nudger.roster import COLUMNS
from nudger.roster import uploads as imports_job
from nudger.web import db, settings
from nudger.web.admin.console import actor, clock
from nudger.web.downloads import attachment

bp = Blueprint("upload", __name__)
log = logging.getLogger(__name__)

SHOWN = 200  # errors and warnings listed on the page; the CSV has every one


def _store() -> imports_job.UploadStore:
    return imports_job.UploadStore(settings().instance_path)


def _engine():
    from flask import current_app

    return current_app.extensions["nudger.engine"]


def _upload(upload_id: str) -> imports_job.Upload:
    upload = _store().get(upload_id)
    if upload is None:
        abort(404)
    return imports_job.refresh(settings(), _store(), upload)


def _run(upload: imports_job.Upload, dry_run: bool) -> None:
    """Start a check or commit; a failure is shown on the upload's page, not as a crash."""
    try:
        imports_job.start(settings(), _engine(), _store(), upload, dry_run, clock())
    except Exception:
        log.exception("upload %s: %s failed", upload.id, "check" if dry_run else "commit")
        latest = _store().get(upload.id)
        if latest is not None and not latest.error:
            latest.state, latest.error = "failed", "the import stopped unexpectedly"
            _store().save(latest)


@bp.get("/upload")
def index():
    journeys = db().exec(select(Journey.slug, Journey.title).order_by(Journey.title)).all()
    return render_template("admin/upload.html", journeys=journeys, columns=COLUMNS,
                           inline_max=imports_job.INLINE_MAX_ROWS)  # fmt: skip


@bp.post("/upload")
def create():
    file = request.files.get("file")
    if file is None or not file.filename:
        flash("Choose a CSV file to upload.")
        return redirect(url_for("admin.upload.index"))
    journey = request.form.get("journey", "").strip()
    upload = _store().create(file.stream, file.filename, journey, actor(), clock())
    if upload.size == 0:
        _store().discard(upload.id)
        flash(f"{upload.filename} is empty: export the spreadsheet as CSV and try again.")
        return redirect(url_for("admin.upload.index"))
    _run(upload, dry_run=True)
    return redirect(url_for("admin.upload.show", upload_id=upload.id))


@bp.get("/upload/<upload_id>")
def show(upload_id: str):
    upload = _upload(upload_id)
    preview = _store().result(upload_id, "preview")
    committed = _store().result(upload_id, "commit")
    return render_template(
        "admin/upload_show.html",
        upload=upload,
        preview=preview,
        committed=committed,
        shown=SHOWN,
        has_file=_store().csv_path(upload_id).exists(),
    )


@bp.get("/upload/<upload_id>/status.json")
def status(upload_id: str):
    upload = _upload(upload_id)
    return jsonify(
        state=upload.state,
        phase=upload.phase,
        progress=upload.progress,
        running=upload.running,
        error=upload.error,
    )


@bp.get("/upload/<upload_id>/errors.csv")
def errors_csv(upload_id: str):
    _upload(upload_id)
    text = _store().error_csv(upload_id)
    if text is None:
        abort(404)
    upload = _store().get(upload_id)
    name = Path(upload.filename).stem or "upload"
    # The name comes from the admin's browser: attachment() encodes it safely.
    return attachment(text.encode("utf-8-sig"), "text/csv", f"{name}-errors.csv")


@bp.post("/upload/<upload_id>/commit")
def commit(upload_id: str):
    upload = _upload(upload_id)
    if not _store().committable(upload):
        flash("This file can't be enrolled as it is: fix the errors and upload it again.")
        return redirect(url_for("admin.upload.show", upload_id=upload_id))
    _run(upload, dry_run=False)
    return redirect(url_for("admin.upload.show", upload_id=upload_id))


@bp.post("/upload/<upload_id>/check")
def check(upload_id: str):
    upload = _upload(upload_id)
    if not upload.running and _store().csv_path(upload_id).exists():
        _run(upload, dry_run=True)
    return redirect(url_for("admin.upload.show", upload_id=upload_id))


@bp.post("/upload/<upload_id>/discard")
def discard(upload_id: str):
    upload = _upload(upload_id)
    if upload.running:
        flash("Wait for the check to finish before discarding the file.")
        return redirect(url_for("admin.upload.show", upload_id=upload_id))
    _store().discard(upload_id)
    flash(f"{upload.filename} discarded; nothing was written.")
    return redirect(url_for("admin.upload.index"))
