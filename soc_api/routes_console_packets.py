"""The alert page's "packets" view (issue 16 × issue 18): fragments the alert page loads
with htmx: the packet list (Wireshark's columns), one packet's protocol tree and hex, a
followed TCP/HTTP stream, the carved files with their hashes. Reads go through the
packets API's own functions (soc_api.routes_packets): the same roles, departments, slots
and audit records; carving is the page script calling that API's POST route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from soc_api.console.render import local_time, page, zone_of
from soc_api.routes_data import doc_id
from soc_api.routes_packets import carved_files, dissect_json, follow_json, origin

router = APIRouter(tags=["console"], include_in_schema=False)


def _failed(request: Request, exc: HTTPException) -> HTMLResponse:
    """A fragment saying why (the page around it stays): no packets, too busy, …"""
    return page(request, "_packets_error.html", status=200 if exc.status_code == 404
                else exc.status_code, detail=str(exc.detail), missing=exc.status_code == 404)


@router.get("/ui/alerts/{alert_id}/packets", response_class=HTMLResponse)
def packets_view(request: Request, alert_id: str = doc_id()):
    origin(request, "alerts", alert_id)  # another department's alert: the error page
    try:
        got = dissect_json(request, "alerts", alert_id, with_hex=False)
    except HTTPException as exc:
        return _failed(request, exc)
    zone = zone_of(request)
    for p in got["packets"]:
        p["time_local"] = local_time(p["time"], zone)
    streams = sorted({p["tcp_stream"] for p in got["packets"] if p["tcp_stream"] is not None})
    first = next((p for p in got["packets"] if p["protocol"] in ("HTTP", "FTP", "SMB2")),
                 got["packets"][0] if got["packets"] else None)
    return page(request, "_packets.html", id=alert_id, packets=got["packets"],
                notes=got["notes"], streams=streams[:50], first=first)


@router.get("/ui/alerts/{alert_id}/packets/{frame}", response_class=HTMLResponse)
def packet_detail(request: Request, alert_id: str = doc_id(),
                  frame: int = PathParam(ge=1, le=1 << 31)):
    try:
        got = dissect_json(request, "alerts", alert_id, frame=frame)
    except HTTPException as exc:
        return _failed(request, exc)
    return page(request, "_packet.html", packet=got["packets"][0] if got["packets"] else None,
                notes=got["notes"])


@router.get("/ui/alerts/{alert_id}/follow", response_class=HTMLResponse)
def follow_view(request: Request, alert_id: str = doc_id(),
                how: str = Query("tcp", alias="as", pattern="^(tcp|http)$"),
                stream: int = Query(0, ge=0, le=1 << 31)):
    try:
        got = follow_json(request, "alerts", alert_id, how, stream)
    except HTTPException as exc:
        return _failed(request, exc)
    return page(request, "_follow.html", follow=got)


@router.get("/ui/alerts/{alert_id}/files", response_class=HTMLResponse)
def files_view(request: Request, alert_id: str = doc_id()):
    origin(request, "alerts", alert_id)  # 404 unless the caller sees the alert
    hits = carved_files(request, alert_id)
    request.app.state.ctx.audit(request, "packets.files", object=alert_id,
                                extra={"hits": len(hits), "via": "console"})
    files: list[dict[str, Any]] = [{
        "name": (h.get("file") or {}).get("name", ""),
        "size": (h.get("file") or {}).get("size", 0),
        "mime": (h.get("file") or {}).get("mime_type", ""),
        "sha256": ((h.get("file") or {}).get("hash") or {}).get("sha256", ""),
        "sm3": (((h.get("govsoc") or {}).get("file") or {}).get("hash") or {}).get("sm3", ""),
        "proto": (h.get("network") or {}).get("protocol", "")} for h in hits]
    return page(request, "_carved.html", files=files, id=alert_id)
