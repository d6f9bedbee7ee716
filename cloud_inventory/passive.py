"""Passive discovery: hosts and services seen talking in the collected flows (as Zeek's
known_hosts / known_services do), and what the host collectors report of their hosts.

A local address (`inventory.local_nets`, default `inventory.cidrs`) that sends or answers
traffic is a host; a local address that *answered* a connection on a port (an established
connection state, not a bare attempt) offers a service there, when the port is well known
or its protocol was recognised or it answered repeatedly (see `is_service`). One GROUP BY
over the flows of the window (`EventStore.groups`) does the counting; absence of traffic
proves nothing, so passive discovery never marks a host gone or a service closed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from cloud_inventory.config import (
    HTTP_ADMIN_PORTS,
    PORT_CLASSES,
    InventoryConfig,
    classifier,
    inventory_config,
)
from cloud_inventory.model import Observation
from cloud_inventory.registry import RecordResult, record, sweeps
from soc_core import ecs
from soc_core.store import Selection, resolve_millis

FLOW_DATASET = "network.flow"
# Zeek connection states where the responder answered the handshake (or, for UDP, replied)
ANSWERED = frozenset({"S1", "SF", "S2", "S3", "RSTO", "RSTR"})
REPEATED = 3  # answered flows that make an unrecognised high port a service
KNOWN_PORTS = frozenset({*HTTP_ADMIN_PORTS, *(p for c in PORT_CLASSES.values() for p in c)})
ANSWER_FIELDS = ["destination.ip", "destination.port", "network.transport", "network.protocol",
                 "zeek.connection.state"]
FLOW_FIELDS = ["source.ip", "destination.ip", "destination.port", "network.transport",
               "network.protocol", "zeek.connection.state"]


def _iso(ms: int) -> str:
    return ecs.format_time(datetime.fromtimestamp(ms / 1000, UTC))


def is_service(port: int, protocol: Any, flows: int) -> bool:
    """A port that answered is a service when its protocol was recognised, it is a well-known
    or a known management/database/admin port, or it answered again and again; a one-off
    answer on an ephemeral port (FTP's data connections, RTP) is not."""
    return bool(protocol) or port < 1024 or port in KNOWN_PORTS or flows >= REPEATED


def flow_observations(talkers: list[tuple[tuple[Any, ...], int, int, int]],
                      answers: list[tuple[tuple[Any, ...], int, int, int]],
                      is_local: Any) -> list[Observation]:
    """Observations from grouped flows: `talkers` by (source.ip), `answers` by
    (destination.ip, destination.port, network.transport, network.protocol, state)."""
    seen: dict[str, list[int]] = {}  # ip -> [first_ms, last_ms]
    services: dict[str, dict[tuple[str, int], dict[str, Any]]] = defaultdict(dict)

    def touch(ip: str, first: int, last: int) -> None:
        span = seen.get(ip)
        if span is None:
            seen[ip] = [first, last]
        else:
            span[0], span[1] = min(span[0], first), max(span[1], last)

    for (src,), _n, first, last in talkers:
        if src and is_local(src):
            touch(src, first, last)
    local: dict[str, bool] = {}
    for (dst, dport, transport, protocol, state), n, first, last in answers:
        if state not in ANSWERED or not dst:
            continue
        mine = local.get(dst)
        if mine is None:
            mine = local[dst] = is_local(dst)
        if not mine:
            continue
        touch(dst, first, last)
        if dport is not None and transport:
            key = (str(transport), int(dport))
            svc = services[dst].get(key)
            if svc is None:
                services[dst][key] = svc = {"protocol": key[0], "port": key[1],
                                            "flows": 0, "first": first, "last": last}
            svc["flows"] += n
            svc["first"], svc["last"] = min(svc["first"], first), max(svc["last"], last)
            if protocol and not svc.get("service"):
                svc["service"] = protocol
    out = []
    for ip, (first, last) in seen.items():
        listening = [{"protocol": s["protocol"], "port": s["port"], "address": ip,
                      "service": s.get("service"), "flows": s["flows"],
                      "first_seen": _iso(s["first"]), "last_seen": _iso(s["last"])}
                     for s in services.get(ip, {}).values()
                     if is_service(s["port"], s.get("service"), s["flows"])]
        out.append(Observation(source="passive", seen=_iso(last), first=_iso(first), ips=[ip],
                               listening=listening))
    return out


def window(store: Any, since: Any, until: Any, source: str) -> tuple[int, int]:
    """The window of a run: from `since`, else where the last run of this source ended,
    else a day back; to `until`, else now."""
    end = resolve_millis(until or "now")
    if since is not None:
        return resolve_millis(since), end
    for s in sweeps(store, limit=50):
        inv = ecs.get_field(s, "govsoc.inventory") or {}
        if inv.get("source") == source and inv.get("until"):
            return resolve_millis(inv["until"]), end
    return resolve_millis("now-1d"), end


def discover_flows(store: Any, *, since: Any = None, until: Any = None,
                   conf: InventoryConfig | None = None) -> RecordResult:
    """Record the hosts and services the flows of the window show."""
    conf = conf or inventory_config()
    start, end = window(store, since, until, "passive")
    sel = Selection(dataset=FLOW_DATASET, start=_iso(start), end=_iso(end))
    # two GROUP BYs: who talks (an indexed column only) and who answers on which port
    talkers = store.groups(["source.ip"], sel)
    answers = store.groups(ANSWER_FIELDS, sel)
    obs = flow_observations(talkers, answers, conf.is_local)
    run_id = ecs.stable_id("passive", start, end)
    return record(store, obs, source="passive", run_id=run_id,
                  summary={"since": _iso(start), "until": _iso(end),
                           "flows": sum(g[1] for g in talkers)},
                  classify=classifier(conf))


SOCKET_DATASET = "system.socket"


def discover_host_collectors(store: Any, *, since: Any = None, until: Any = None
                             ) -> RecordResult:
    """Record the listening sockets the host collectors reported (`system.socket`,
    `network.direction: listening`): a host running our agent is a managed host."""
    start, end = window(store, since, until, "host")
    groups = store.groups(["host.name", "destination.ip", "destination.port",
                           "network.transport", "event.action"],
                          Selection(dataset=SOCKET_DATASET, start=_iso(start), end=_iso(end),
                                    filters={"network.direction": "listening"}))
    # a socket's latest report decides: opened (or found at start) and not closed since
    latest: dict[tuple[Any, ...], tuple[str, int, int]] = {}
    for (*key, action), _n, first, last in groups:
        prev = latest.get(tuple(key))
        if prev is None or last > prev[2]:
            latest[tuple(key)] = (action, min(first, prev[1]) if prev else first, last)
    by_host: dict[str, list[Any]] = defaultdict(list)
    for key, (action, first, last) in latest.items():
        if action != "socket_closed":
            by_host[key[0]].append((key, first, last))
    obs = []
    for name, rows in by_host.items():
        if not name:
            continue
        listening = [{"protocol": t, "port": int(p), "address": ip,
                      "first_seen": _iso(f), "last_seen": _iso(la)}
                     for (_, ip, p, t), f, la in rows if p is not None and t]
        obs.append(Observation(source="host", name=name, hostname=name,
                               seen=_iso(max(r[2] for r in rows)),
                               first=_iso(min(r[1] for r in rows)), listening=listening))
    return record(store, obs, source="host", run_id=ecs.stable_id("host", start, end),
                  summary={"since": _iso(start), "until": _iso(end)}, classify=classifier())
