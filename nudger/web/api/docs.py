"""/api/docs: a plain HTML reference drawn from the OpenAPI document, with no script."""

from __future__ import annotations

from flask import Blueprint, render_template

from nudger.web.api.spec import document

bp = Blueprint("api_docs", __name__)


@bp.get("/api/docs")
def docs():
    doc = document()
    schemas = doc["components"]["schemas"]
    operations = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            operations.append((method.upper(), path, op))
    return render_template("api/docs.html", doc=doc, operations=operations, schemas=schemas)
