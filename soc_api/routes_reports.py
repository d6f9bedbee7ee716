"""Signed reports and the compliance self-assessment, for auditors (`compliance:read`).

Reports span every department (the register, the 等保/密评 assessment), so a principal
limited to some departments is refused them rather than shown a partial picture."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from cloud_inventory import (
    check_compliance,
    list_reports,
    report_entry,
    report_files,
)
from soc_core.store import StoreError

router = APIRouter(tags=["reports"])
MEDIA = {"pdf": "application/pdf", "html": "text/html; charset=utf-8"}


def _all_departments(request: Request) -> None:
    if not request.state.principal.all_departments:
        raise HTTPException(403, "reports cover every department: they need a grant of "
                                 "all departments")


@router.get("/reports")
def reports(request: Request, kind: str | None = Query(None, max_length=32),
            size: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    _all_departments(request)
    ctx = request.app.state.ctx
    try:
        found = list_reports(ctx.store, kind=kind, limit=size)
    except StoreError as exc:
        raise HTTPException(503, "the event store cannot answer now") from exc
    for r in found:
        r.pop("folder", None)  # a server path is no business of the client
    return {"reports": found}


def _entry(request: Request, name: str) -> dict[str, Any]:
    _all_departments(request)
    entry = report_entry(request.app.state.ctx.store, name)
    if entry is None:
        raise HTTPException(404, f"no report named {name[:80]!r}")
    return entry


def _read(path: Any, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise HTTPException(404, f"the {what} is no longer on the server") from None


@router.get("/reports/{name}")
def report_file(request: Request, name: str) -> Response:
    entry = _entry(request, name)
    path, _, _ = report_files(entry)
    data = _read(path, "report file")
    request.app.state.ctx.audit(request, "report.download", object=name,
                                extra={"sm3": entry.get("sm3")})
    return Response(data, media_type=MEDIA.get(entry.get("format", ""), "application/octet-stream"),
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/reports/{name}/signature")
def report_signature(request: Request, name: str) -> Response:
    """The detached SM2 signature (DER), as `openssl dgst -verify -signature` reads it."""
    entry = _entry(request, name)
    _, sig, _ = report_files(entry)
    return Response(_read(sig, "signature"), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}.sig"'})


@router.get("/reports/{name}/public-key")
def report_public_key(request: Request, name: str) -> Response:
    """The platform public key (PEM) written beside the report."""
    entry = _entry(request, name)
    _, _, pub = report_files(entry)
    return Response(_read(pub, "public key"), media_type="application/x-pem-file")


@router.get("/compliance")
def compliance(request: Request,
               standard: str | None = Query(None, pattern="^(djcp-l3|mp)$")) -> dict[str, Any]:
    _all_departments(request)
    ctx = request.app.state.ctx
    try:
        findings = check_compliance(ctx.store, ctx.cfg, standard=standard)
    except StoreError as exc:
        raise HTTPException(503, "the event store cannot answer now") from exc
    ctx.audit(request, "compliance.check", extra={"standard": standard})
    return {"controls": [f.to_dict() for f in findings]}
