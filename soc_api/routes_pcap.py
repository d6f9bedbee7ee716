"""Packets over HTTP: the packet ring's pcap of flows (collectors.packet.write_flow_pcap),
as a download. Packets carry everything a connection said, so each download needs
`pcap:read`, is scoped to the caller's departments (another department's flow or alert
is not found) and is written to the audit trail whether it succeeds or not.

    GET /pcap?flow=EVENT_ID[&flow=...]      a flow event, or any network event of a flow
    GET /pcap?alert=ALERT_ID                the flows of an alert's matched events
    GET /pcap?q=QUERY&from=T&to=T           the flows of the events a query selects

Answers `application/vnd.tcpdump.pcap`, with `X-Govsoc-Packets`, `X-Govsoc-Flows` and
`X-Govsoc-Notes` (JSON list: rotated-out files, damage, flows without packets)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from collectors.packet import PcapError, write_flow_pcap
from soc_api import tenancy
from soc_core import query as q
from soc_core.config import ConfigError
from soc_core.store import StoreError

router = APIRouter(tags=["pcap"])
MEDIA = "application/vnd.tcpdump.pcap"
_ID = r"^[A-Za-z0-9._:-]+$"
MAX_IDS = 100


@router.get("/pcap")
def get_pcap(request: Request,
             flow: list[str] = Query([],
                                     description="flow event ids (repeatable)"),
             alert: str | None = Query(None, max_length=128, pattern=_ID),
             q_: str | None = Query(None, alias="q", max_length=4000),
             start: str | None = Query(None, alias="from", max_length=64),
             end: str | None = Query(None, alias="to", max_length=64)) -> Any:
    ctx = request.app.state.ctx
    principal = request.state.principal
    what = (f"flow:{','.join(flow)}" if flow else f"alert:{alert}" if alert
            else f"query:{q_}")
    if sum(bool(x) for x in (flow, alert, q_)) != 1:
        raise HTTPException(400, "give exactly one of flow, alert, q (with from and to)")
    if len(flow) > MAX_IDS:
        raise HTTPException(400, f"at most {MAX_IDS} flow ids")
    if any(len(f) > 128 or not f.replace("-", "").replace(".", "").replace(":", "")
           .replace("_", "").isalnum() for f in flow):
        raise HTTPException(400, "bad flow id")
    if q_ and (not start or not end):
        raise HTTPException(400, "a query needs from and to")

    def visible(doc: dict[str, Any]) -> bool:
        return tenancy.visible(principal, doc)

    def refuse(status: int, detail: str) -> None:
        ctx.audit(request, "pcap.download", "failure", object=what[:300], reason=detail)
        raise HTTPException(status, detail)

    query = None
    if q_:
        try:
            parsed = q.parse(q_) if q_.strip() != "*" else None
        except (q.QueryError, RecursionError) as exc:
            raise HTTPException(400, str(exc).splitlines()[0][:300]) from None
        query = tenancy.scope(principal, parsed) or q.Exists("event.id")
    fd, path = tempfile.mkstemp(prefix="govsoc-pcap-", suffix=".pcap")
    try:
        with os.fdopen(fd, "wb") as out:
            result = write_flow_pcap(ctx.store, ctx.cfg, out, flows=flow, alert=alert,
                                     query=query, start=start, end=end, visible=visible)
    except PcapError as exc:
        os.unlink(path)
        msg = str(exc).splitlines()[0][:300]
        refuse(404 if msg.startswith("no such") else 400, msg)
    except (ConfigError, StoreError) as exc:
        os.unlink(path)
        raise HTTPException(503, f"packets cannot be read now: "
                                 f"{str(exc).splitlines()[0][:200]}") from None
    except BaseException:
        os.unlink(path)
        raise
    if not result.flows:
        os.unlink(path)
        refuse(404, result.notes[0] if result.notes else "no flow matched")
    ctx.audit(request, "pcap.download", object=what[:300],
              extra={"packets": result.packets, "flows": result.flows,
                     "flow_ids": result.flow_ids[:100], "notes": len(result.notes),
                     "from": start, "to": end})
    notes = json.dumps(result.notes[:50], ensure_ascii=True)[:8000]
    return FileResponse(path, media_type=MEDIA, filename="govsoc-flows.pcap",
                        headers={"X-Govsoc-Packets": str(result.packets),
                                 "X-Govsoc-Flows": str(result.flows),
                                 "X-Govsoc-Notes": notes},
                        background=BackgroundTask(os.unlink, path))
