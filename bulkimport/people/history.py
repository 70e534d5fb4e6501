"""View of Admin > People > Import history: every uploaded file, who uploaded it and what became
of it, with links to its review, results and invitations."""

from __future__ import annotations

from flask import render_template, request
from sqlalchemy import select
from sqlalchemy.orm import defer, joinedload

from ..extensions import db
from ..models import ImportBatch
from ..web import page_number
from . import bp

BATCHES_PER_PAGE = 50


@bp.get("/imports")
def history():
    """Every batch, newest first: who, when, file name, SHA-256, size, counts and status."""
    # Never the column lists: they are the review page's business, and a list of many wide
    # files once took seconds and gigabytes to load.
    query = (select(ImportBatch).options(joinedload(ImportBatch.owner),
                                         defer(ImportBatch.columns, raiseload=True))
             .order_by(ImportBatch.id.desc()))
    batches = db.paginate(query, page=page_number(request.args), per_page=BATCHES_PER_PAGE,
                          error_out=False)
    return render_template("people/history.html", batches=batches)
