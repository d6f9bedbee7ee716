"""A flow's or an alert's packets over HTTP (issue 18): dissected by Wireshark (protocol
tree, hex, follow stream), the files they carry carved, listed and downloaded.

Packets are the most sensitive data the SOC keeps (payloads: credentials, personal data,
documents), so:
- `pcap:read` (dissect, follow, list carved files: the same content as the ring's own
  `GET /pcap`, so the same permission) and `packets:carve` are the analyst's and the
  responder's, who work alerts; not the viewer's (a wall screen), and
  not the administrators' (三权分立: the system, security and audit administrators read no
  traffic);
- `files:download` is the responder's only: carved bytes may be live malware or a
  citizen's document leaving the platform; an analyst sees their hashes (enough for threat
  intelligence) and asks a responder for the file;
- a flow or alert of another department is not found; an alert's packets are those of
  its events the caller may see, one by one;
- every dissection, follow, carving and download is in the audit trail.

The packets come from the packet ring (collectors.packet.write_flow_pcap) into a
temporary capture removed after the request; at most `packets.concurrent` dissections
run at once per API process (tshark is heavy), the rest get 429.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from collectors import packet as pk
from soc_api import tenancy
from soc_api.routes_data import doc_id, store_call
from soc_core import query as q
from soc_core.store import Selection

router = APIRouter(tags=["packets"])

KINDS = {"flows": "events", "alerts": "alerts"}
_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_LOCK = threading.Lock()
SHA = PathParam(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")


def _slots(request: Request) -> threading.BoundedSemaphore:
    ctx = request.app.state.ctx
    with _LOCK:
        sem = _SLOTS.get(id(ctx))
        if sem is None:
            sem = _SLOTS[id(ctx)] = threading.BoundedSemaphore(
                max(1, int(ctx.cfg.get("packets.concurrent", 2))))
    return sem


def limits(request: Request, packets: int | None = None) -> pk.Limits:
    cfg = request.app.state.ctx.cfg
    most = int(cfg.get("packets.max_packets", 200))
    return pk.Limits(packets=min(packets or most, most),
                            timeout_s=float(cfg.get("packets.timeout_s", 30)))


def origin(request: Request, kind: str, ident: str) -> dict[str, Any]:
    """The flow event or alert, if the caller's departments see it (else 404)."""
    family = KINDS[kind]
    doc = store_call(request.app.state.ctx.store.get, family, ident)
    if doc is None or not tenancy.visible(request.state.principal, doc):
        raise HTTPException(404, "no such flow" if kind == "flows" else "no such alert")
    return doc


@contextmanager
def capture(request: Request, kind: str, ident: str, *, session: bool = False
            ) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(the FlowCapture of the flow's / alert's packets the caller may see, the flow or
    alert), holding one of the process's dissection slots. Of an alert, only the events
    (and their flows) of the caller's departments are retrieved, one by one. `session`:
    an FTP control flow comes with its data connections (see ftp_session)."""
    doc = origin(request, kind, ident)
    ftp = pk.ftp_session(doc) if session and kind == "flows" else None
    p = request.state.principal
    sem = _slots(request)
    if not sem.acquire(timeout=5):
        raise HTTPException(429, "too many packet dissections running: try again shortly",
                            headers={"Retry-After": "5"})
    try:
        ctx = request.app.state.ctx
        try:
            with pk.flow_capture(ctx.store, ctx.cfg, flows=(ident,) if kind == "flows" else (),
                              alert=ident if kind == "alerts" else None, session=ftp,
                              visible=lambda d: tenancy.visible(p, d)) as got:
                yield got, doc
        except pk.NoPackets as exc:
            raise HTTPException(404, str(exc)[:300]) from None
    finally:
        sem.release()


def dissect_json(request: Request, kind: str, ident: str, *, frame: int | None = None,
                 with_hex: bool = True, packets: int | None = None) -> dict[str, Any]:
    """The dissection, audited (the API route and the console page both call this)."""
    with capture(request, kind, ident) as (got, _doc):
        try:
            result = pk.dissect(got.path, limits=limits(request, packets),
                                       with_hex=with_hex, only=frame)
        except pk.DissectError as exc:
            raise HTTPException(400, str(exc)[:300]) from None
    result.notes[:0] = got.notes
    request.app.state.ctx.audit(request, "packets.dissect", object=f"{kind[:-1]}:{ident}",
                                extra={"frame": frame, "packets": len(result.packets),
                                       "truncated": result.truncated})
    return {"kind": kind[:-1], "id": ident, "flows": got.flows, **result.to_dict()}


def follow_json(request: Request, kind: str, ident: str, how: str, stream: int
                ) -> dict[str, Any]:
    with capture(request, kind, ident) as (got, _doc):
        try:
            result = pk.follow(got.path, how, stream, limits=limits(request))
        except pk.DissectError as exc:
            raise HTTPException(400, str(exc)[:300]) from None
    result["notes"] = got.notes + result["notes"]
    request.app.state.ctx.audit(request, "packets.follow", object=f"{kind[:-1]}:{ident}",
                                extra={"follow": how, "stream": stream,
                                       "bytes": result["bytes"]})
    return result


def carved_files(request: Request, origin_id: str) -> list[dict[str, Any]]:
    """The carved-file events of a flow or alert the caller's departments see."""
    sel = Selection(family="events", dataset=pk.CARVED_DATASET, query=tenancy.scope(
        request.state.principal, q.Term("govsoc.carve.origin", origin_id, True)))
    return store_call(request.app.state.ctx.store.search, sel, size=1000).hits


# -- routes -----------------------------------------------------------------------------
# files first: "/packets/files/..." must not be taken for a kind of origin

@router.get("/packets/files")
def files(request: Request, origin_id: str = Query(..., alias="origin", min_length=1,
                                                     max_length=128,
                                                     pattern=r"^[A-Za-z0-9._:-]+$")
          ) -> dict[str, Any]:
    """The files carved from a flow or alert (`origin`: its id)."""
    hits = carved_files(request, origin_id)
    request.app.state.ctx.audit(request, "packets.files", object=origin_id,
                                extra={"hits": len(hits)})
    return {"items": hits}


@router.get("/packets/files/{sha256}")
def download(request: Request, sha256: str = SHA) -> FileResponse:
    """The carved bytes, as an attachment (never rendered: application/octet-stream), if a
    carved-file event of the caller's departments names them."""
    ctx = request.app.state.ctx
    sel = Selection(family="events", dataset=pk.CARVED_DATASET, query=tenancy.scope(
        request.state.principal, q.Term("file.hash.sha256", sha256, True)))
    found = store_call(ctx.store.search, sel, size=1).hits
    path = pk.carved_path(ctx.cfg.data_dir, sha256)
    if not found or not path.is_file():
        ctx.audit(request, "files.download", "failure", object=sha256, reason="not found")
        raise HTTPException(404, "no such carved file")
    name = Path(str((found[0].get("file") or {}).get("name") or sha256)).name
    ctx.audit(request, "files.download", object=sha256,
              extra={"name": name[:200], "size": path.stat().st_size})
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"{sha256}.bin",
                        headers={"Content-Security-Policy": "sandbox",
                                 "X-Content-Type-Options": "nosniff"})


_FRAME = Query(None, ge=1, le=1 << 31, description="only this frame (its number)")
_HEX = Query(True, description="each packet's hex dump")
_SIZE = Query(None, ge=1, le=100000, description="at most this many packets")
_AS = Query("tcp", alias="as", description="tcp or http")
_STREAM = Query(0, ge=0, le=1 << 31, description="Wireshark's tcp.stream index")


def _packets_doc(kind: str) -> str:
    return (f"The packets of a {kind[:-1]} decoded by Wireshark's dissectors: per packet its "
            "summary (number, time, source, destination, protocol, info), its protocol tree "
            "(`layers`: name, showname, show, value, children) and hex dump; `notes` say "
            "what was cut or could not be decoded.")


@router.get("/packets/flows/{event_id}", description=_packets_doc("flows"))
def flow_packets(request: Request, event_id: str = doc_id(), frame: int | None = _FRAME,
                 hex: bool = _HEX, size: int | None = _SIZE) -> dict[str, Any]:  # noqa: A002
    return dissect_json(request, "flows", event_id, frame=frame, with_hex=hex, packets=size)


@router.get("/packets/alerts/{alert_id}", description=_packets_doc("alerts"))
def alert_packets(request: Request, alert_id: str = doc_id(), frame: int | None = _FRAME,
                  hex: bool = _HEX, size: int | None = _SIZE) -> dict[str, Any]:  # noqa: A002
    return dissect_json(request, "alerts", alert_id, frame=frame, with_hex=hex, packets=size)


@router.get("/packets/flows/{event_id}/follow")
def flow_follow(request: Request, event_id: str = doc_id(),
                how: Literal["tcp", "http"] = _AS, stream: int = _STREAM) -> dict[str, Any]:
    """Follow TCP/HTTP stream `stream` of the flow's packets."""
    return follow_json(request, "flows", event_id, how, stream)


@router.get("/packets/alerts/{alert_id}/follow")
def alert_follow(request: Request, alert_id: str = doc_id(),
                 how: Literal["tcp", "http"] = _AS, stream: int = _STREAM) -> dict[str, Any]:
    """Follow TCP/HTTP stream `stream` of the alert's packets."""
    return follow_json(request, "alerts", alert_id, how, stream)


def carve_json(request: Request, kind: str, ident: str) -> dict[str, Any]:
    """Carve the files of the flow's (alert's) HTTP, FTP and SMB transfers: stored by
    SHA-256, recorded as `file.carved` events with SM3 and SHA-256 (carving again adds
    nothing: the ids are deterministic)."""
    ctx = request.app.state.ctx
    with capture(request, kind, ident, session=True) as (got, doc):
        result = pk.carve(got.path, ctx.cfg.data_dir, origin=doc)
    result.notes[:0] = got.notes
    written = store_call(pk.record_carved, ctx.store, result)
    ctx.audit(request, "packets.carve", object=f"{kind[:-1]}:{ident}",
              extra={"files": len(result.files), "new": written.written,
                     "sha256": [f["file"]["hash"]["sha256"] for f in result.files][:50]})
    if written.rejected:
        raise HTTPException(503, f"the store refused {len(written.rejected)} file events")
    return {"files": result.files, "notes": result.notes, "new": written.written}


@router.post("/packets/flows/{event_id}/carve")
def flow_carve(request: Request, event_id: str = doc_id()) -> dict[str, Any]:
    """Carve the files of the flow's HTTP, FTP and SMB transfers."""
    return carve_json(request, "flows", event_id)


@router.post("/packets/alerts/{alert_id}/carve")
def alert_carve(request: Request, alert_id: str = doc_id()) -> dict[str, Any]:
    """Carve the files of the HTTP, FTP and SMB transfers of the alert's flows."""
    return carve_json(request, "alerts", alert_id)
