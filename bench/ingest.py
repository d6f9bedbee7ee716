"""Ingest throughput of EventStore against a raw bulk load of the same documents, in the
same run, for each backend.

    python bench/ingest.py [--events 200000] [--batch 20000] [--es URL] [--sqlite-only]
    python bench/ingest.py --shipper      # through collectors.shipper.Shipper instead

Per-event work on every SQLite side, inside the clock (like with like):
  validation   `ecs.prepare` on each document: the checks every writer must pass and the
               JSON text it makes (the store and the shipper validate every document, so
               the baseline does too; a loader that skipped it would store what the store
               refuses). Its CPU is printed on its own, and the ratio without it.
  row          the hot columns, the segmented full-text column, the JSON (from the
               validation, not made twice) and the value columns.
  insert       the same INSERT into the same schema, indexes included, and the INSERT ...
               SELECT that feeds the full-text index (the same work a search needs done).
  checkpoint   a TRUNCATE checkpoint stops every clock: the rows are in the database file
               and the WAL is empty, on both sides alike.
Each side gets its own deep copy of the documents, made before its clock starts.
SQLite baseline: all of it in one list comprehension and the store's own INSERT
statements (`sqlite.insert_rows`: many rows a statement) in one transaction on one thread,
no checkpoint thread; its rows bind the same values as the store's (`same_rows`).
EventStore side: `EventStore.write` in batches of --batch (one transaction each; the
store's checkpoint thread runs beside it).
--shipper side: every document `put()` one at a time into the real Shipper (the collectors'
delivery path, settings as the config defaults: batches of 1,000 that grow with a deep
queue), clock stopped when `flush()` says all is in the store: on top of the work above,
the queue, the delivery thread and a transaction per batch.
Elasticsearch baseline: `elasticsearch.helpers.bulk` with `op_type=create`, the same
`_id`s, into the same data streams' template, with the store's own request shape: orjson
for the documents and responses, and the same `filter_path` on the bulk response.
Each round runs both sides, alternating which goes first (the machine is shared); each
side keeps its best of --rounds, in wall time and in CPU time of the whole process (all
threads: on a loaded machine the wall clock measures the neighbours, CPU time the work).
Targets: SQLite >= 50,000 events/s and >= 0.8x its baseline, at `govsoc ingest`'s batch
(issue 2) and through the shipper (issue 10); ES >= 0.8x.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eslocal import throwaway_node  # noqa: E402

from collectors.shipper import Shipper  # noqa: E402
from soc_core import ecs  # noqa: E402
from soc_core.cli import INGEST_BATCH  # noqa: E402
from soc_core.config import Config  # noqa: E402
from soc_core.store import open_store  # noqa: E402
from soc_core.store.sql import segment  # noqa: E402
from soc_core.store.sqlite import (  # noqa: E402
    FTS_NEW,
    NULL,
    PRAGMAS,
    SCHEMA,
    connect,
    insert_rows,
    row_values,
)

USERS = ["root", "admin", "zhangsan", "lisi", "oracle", "nginx"]
MESSAGES = [
    "Failed password for {u} from {ip} port {p} ssh2",
    "Accepted publickey for {u} from {ip} port {p} ssh2",
    "用户 {u} 登录失败，来源 {ip}",
    "session opened for user {u} by (uid=0)",
]


def make_events(n: int, seed: int = 7) -> list[dict]:
    """Realistic mixed ECS events: flows, DNS, auth logs, process starts."""
    rnd = random.Random(seed)
    t0 = datetime.now(UTC) - timedelta(days=1)
    out = []
    for i in range(n):
        ts = ecs.format_time(t0 + timedelta(milliseconds=i * 37))
        src = f"10.{rnd.randrange(1, 40)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        dst = f"172.20.{rnd.randrange(16)}.{rnd.randrange(1, 255)}"
        host = f"gov-app-{rnd.randrange(200):03d}"
        kind = i % 4
        if kind == 0:
            doc = {"@timestamp": ts, "event": {"dataset": "network.flow", "kind": "event",
                   "category": ["network"], "type": ["connection"]},
                   "source": {"ip": src, "port": rnd.randrange(1024, 65535),
                              "bytes": rnd.randrange(60, 10**6), "packets": rnd.randrange(1, 900)},
                   "destination": {"ip": dst, "port": rnd.choice([22, 53, 80, 443, 3306, 6379]),
                                   "bytes": rnd.randrange(60, 10**6)},
                   "network": {"transport": "tcp", "community_id": f"1:{rnd.getrandbits(64):x}"},
                   "host": {"name": host}}
        elif kind == 1:
            doc = {"@timestamp": ts, "event": {"dataset": "network.dns", "kind": "event"},
                   "source": {"ip": src, "port": rnd.randrange(1024, 65535)},
                   "destination": {"ip": "172.20.0.53", "port": 53},
                   "dns": {"question": {"name": f"h{rnd.randrange(10**5)}.gov.cn", "type": "A"},
                           "response_code": "NOERROR"},
                   "network": {"transport": "udp", "protocol": "dns"}}
        elif kind == 2:
            u = rnd.choice(USERS)
            msg = rnd.choice(MESSAGES).format(u=u, ip=src, p=rnd.randrange(1024, 65535))
            doc = {"@timestamp": ts, "event": {"dataset": "system.auth", "kind": "event",
                   "outcome": rnd.choice(["success", "failure"])},
                   "message": msg, "user": {"name": u}, "source": {"ip": src},
                   "host": {"name": host}, "process": {"name": "sshd", "pid": rnd.randrange(10**5)}}
        else:
            doc = {"@timestamp": ts, "event": {"dataset": "system.process", "kind": "event",
                   "type": ["start"]}, "host": {"name": host},
                   "process": {"pid": rnd.randrange(10**5), "name": "python3",
                               "executable": "/usr/bin/python3",
                               "command_line": f"python3 /opt/app/job_{rnd.randrange(999)}.py",
                               "parent": {"pid": 1, "name": "systemd"}},
                   "user": {"name": rnd.choice(USERS)}}
        doc["event"]["id"] = ecs.stable_id("bench", i)
        out.append(doc)
    return out


def raw_row(p: ecs.Prepared) -> tuple:
    """What any loader of this schema does per validated document: the hot columns, the
    full-text column, the JSON (already made by the validation) and the value columns,
    bound as the store binds them (NULL as a NaN, the JSON as a bytearray: the types
    Python's sqlite3 binds without its adapter lookup). The same values as the store's
    `row_values` (checked, untimed, by `same_rows`)."""
    doc, message = p.doc, p.message
    dst, net, zeek = doc.get("destination"), doc.get("network"), doc.get("zeek")
    alert = (doc.get("govsoc") or {}).get("alert")
    row = (p.family, p.id, p.millis, p.dataset, p.kind, p.host_name, p.source_ip,
           p.destination_ip, segment(message) if message is not None else None,
           bytearray(p.json), dst.get("port") if dst else None,
           net.get("transport") if net else None, net.get("protocol") if net else None,
           zeek["connection"].get("state") if zeek else None,
           alert.get("status") if alert else None, alert.get("changed") if alert else None)
    return tuple(NULL if v is None else v for v in row)


def same_rows(docs: list[dict]) -> None:
    """Both sides bind the same values for the same documents."""
    for d in copy.deepcopy(docs[:1000]):
        p = ecs.prepare(d)
        assert raw_row(p) == row_values(p), (raw_row(p), row_values(p))


def checkpoint(path: str) -> None:
    """Copy the WAL back into the database file and empty it: the end of every side's
    timed work, so each is charged the same way for getting its rows into the file (the
    raw load would otherwise leave its whole WAL to an untimed close, while the store's
    checkpoint thread works inside the clock)."""
    conn = connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def sqlite_raw(path: str, docs: list[dict]) -> tuple[float, float]:
    """The baseline: the same schema and PRAGMAs, every document validated as every writer
    must (`ecs.prepare`: the checks and the JSON), its row built, raw executemany in one
    transaction."""
    conn = connect(path)
    for pragma in PRAGMAS:  # the store's own settings
        conn.execute(f"PRAGMA {pragma}")
    conn.executescript(SCHEMA)
    fresh = copy.deepcopy(docs)
    with frozen():
        t, c = time.perf_counter(), time.process_time()
        conn.execute("BEGIN")
        prepare = ecs.prepare
        rows = [raw_row(prepare(d)) for d in fresh]
        insert_rows(conn, rows)  # the store's INSERT statements
        conn.execute(FTS_NEW, (0,))
        conn.execute("COMMIT")
        checkpoint(path)
        raw = time.perf_counter() - t, time.process_time() - c
    assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == len(docs)
    conn.close()
    return raw


def sqlite_store(path: str, docs: list[dict], batch: int) -> tuple[float, float]:
    store = open_store(f"sqlite:///{path}")
    fresh = copy.deepcopy(docs)
    with frozen():
        t, c = time.perf_counter(), time.process_time()
        written = 0
        for i in range(0, len(fresh), batch):
            written += store.write(fresh[i:i + batch]).written
        checkpoint(path)
        ours = time.perf_counter() - t, time.process_time() - c
    assert written == len(docs), written
    store.close()
    return ours


def sqlite_shipper(path: str, docs: list[dict]) -> tuple[tuple[float, float], dict]:
    """Every document through Shipper.put, as a collector delivers; returns the seconds
    (wall, and CPU of the whole process: the putting thread, the shipper's and the
    checkpointer's) until flush() confirmed all of it in the store, and the shipper's
    health."""
    url = f"sqlite:///{path}"
    open_store(url).close()  # the schema exists, as for any running collector
    data = Path(path).with_suffix(".data")
    shipper = Shipper.from_config(url, "bench", Config(values={"data_dir": str(data)}),
                                  emit_metrics=False).start()
    fresh = copy.deepcopy(docs)
    with frozen():
        t, c = time.perf_counter(), time.process_time()
        put = shipper.put
        for doc in fresh:
            put(doc)
        assert shipper.flush(timeout=600)
        checkpoint(path)
        ours = time.perf_counter() - t, time.process_time() - c
    snap = shipper.close()
    assert snap["events_out"] == len(docs) and not snap["spooled"], snap
    return ours, snap


def validation_cpu(docs: list[dict], rounds: int) -> float:
    """CPU seconds of the validation alone (`ecs.prepare` of every document), best of
    `rounds`: the part of each side's work that is the same by definition."""
    best = float("inf")
    for _ in range(rounds):
        fresh = copy.deepcopy(docs)
        with frozen():
            c = time.process_time()
            prepare = ecs.prepare
            for d in fresh:
                prepare(d)
            best = min(best, time.process_time() - c)
    return best


def bench_sqlite(docs: list[dict], batch: int, rounds: int, shipper: bool
                 ) -> tuple[list[tuple[float, float]], list[tuple[float, float]], dict]:
    """Per round (wall, CPU) seconds of each side, the two alternating which goes first."""
    ours_t, raw_t = [], []
    snap: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for side in (("raw", "ours") if r % 2 == 0 else ("ours", "raw")):
                path = f"{tmp}/{side}{r}.db"
                if side == "raw":
                    raw_t.append(sqlite_raw(path, docs))
                elif shipper:
                    took, snap = sqlite_shipper(path, docs)
                    ours_t.append(took)
                else:
                    ours_t.append(sqlite_store(path, docs, batch))
            for f in Path(tmp).glob(f"*{r}.d*"):  # keep the disk's free space constant
                if f.is_file():
                    f.unlink()
    return ours_t, raw_t, snap


@contextlib.contextmanager
def frozen():
    """Keep the benchmark's own input out of the garbage collector's scans: it holds
    hundreds of thousands of documents at once, where a streaming ingest holds one batch,
    and full collections over them would be charged to whichever side allocates more."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def es_baseline_client(url: str):
    """The raw client as a tuned loader would set it up: orjson for every body it
    encodes or decodes, as the store encodes with orjson."""
    from elasticsearch import Elasticsearch
    from elasticsearch.serializer import OrjsonSerializer

    return Elasticsearch(url, serializer=OrjsonSerializer(), request_timeout=120,
                         max_retries=0)


def es_ours(docs: list[dict], url: str, batch: int, run: str) -> float:
    store = open_store(url, namespace=run + "s")
    fresh = copy.deepcopy(docs)
    with frozen():
        t = time.perf_counter()
        written = 0
        for i in range(0, len(fresh), batch):
            written += store.write(fresh[i:i + batch]).written
        store.refresh()
        ours = time.perf_counter() - t
    assert written == len(docs), written
    store.close()
    return ours


def es_raw(prepared: list[dict], url: str, batch: int, run: str) -> float:
    """helpers.bulk, same ids and data streams (another namespace, same template), with
    the store's serializer and the store's `filter_path` on the bulk response."""
    from elasticsearch import helpers

    open_store(url, namespace=run + "r").close()  # the namespace's templates, untimed
    es = es_baseline_client(url)
    actions = ({"_op_type": "create", "_index": f"logs-govsoc.{d['event']['dataset']}-{run}r",
                "_id": d["event"]["id"], "_source": d} for d in prepared)
    with frozen():
        t = time.perf_counter()
        ok, errors = helpers.bulk(es, actions, chunk_size=batch, max_chunk_bytes=8 << 20,
                                  raise_on_error=False,
                                  filter_path="errors,items.*.status,items.*.error")
        es.indices.refresh(index=f"logs-govsoc.*-{run}r")
        raw = time.perf_counter() - t
    assert ok == len(prepared) and not errors, (ok, errors[:3])
    es.close()
    return raw


def bench_es(docs: list[dict], url: str, batch: int, rounds: int
             ) -> tuple[list[float], list[float]]:
    prepared = [ecs.normalize(copy.deepcopy(d)) for d in docs]  # untimed, for the raw side
    # a fresh node is slow for its first requests (JIT, index creation): both paths once,
    # untimed, before measuring
    run = f"w{time.time_ns() % 10**12}"
    es_ours(docs[:5000], url, 1000, run)
    es_raw(prepared[:5000], url, 1000, run)
    ours_t, raw_t = [], []
    for r in range(rounds):
        run = f"b{time.time_ns() % 10**12}"
        for side in (("ours", "raw") if r % 2 == 0 else ("raw", "ours")):
            if side == "ours":
                ours_t.append(es_ours(docs, url, batch, run))
            else:
                raw_t.append(es_raw(prepared, url, batch, run))
    return ours_t, raw_t


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=INGEST_BATCH,
                    help="documents per EventStore.write (default: as `govsoc ingest` writes)")
    ap.add_argument("--shipper", action="store_true",
                    help="SQLite through the collectors' Shipper (one put() per document) "
                         "against the raw load; implies --sqlite-only")
    ap.add_argument("--es", default=None, help="Elasticsearch URL (default: start es-local)")
    ap.add_argument("--sqlite-only", action="store_true")
    ap.add_argument("--rounds", type=int, default=5,
                    help="best of N alternating runs (fewer: the noise of a shared machine shows)")
    args = ap.parse_args()
    docs = make_events(args.events)
    n = len(docs)
    how = ("through Shipper.put (batches of 1,000 growing with the queue, up to 20,000)"
           if args.shipper else f"EventStore.write batches of {args.batch}")
    print(f"{n} events, {how}; best of {args.rounds} rounds, alternating order; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    same_rows(docs)
    ours_t, raw_t, snap = bench_sqlite(docs, args.batch, args.rounds, args.shipper)
    name = "Shipper" if args.shipper else "EventStore"
    # wall time is what a user sees, CPU time what survives a loaded machine: both, best of
    # the rounds for each on its own
    for clock, i in (("wall", 0), ("CPU ", 1)):
        ours, raw = min(t[i] for t in ours_t), min(t[i] for t in raw_t)
        print(f"sqlite {clock} {name} {n / ours:10,.0f} ev/s ({ours / n * 1e6:5.1f} us/ev)   "
              f"raw insert_rows (1 transaction) {n / raw:10,.0f} ev/s "
              f"({raw / n * 1e6:5.1f} us/ev)   ratio {raw / ours:.2f}  "
              f"(target >= 50,000 ev/s and >= 0.80)"
              f"\n        seconds, ours: {runs([t[i] for t in ours_t])}; "
              f"raw: {runs([t[i] for t in raw_t])}")
    valid = validation_cpu(docs, args.rounds)
    ours, raw = min(t[1] for t in ours_t), min(t[1] for t in raw_t)
    print(f"        ecs.prepare (validation and the JSON text, the same on every side) "
          f"{valid / n * 1e6:.1f} us/ev of CPU; without it, {name} "
          f"{(ours - valid) / n * 1e6:.1f} us/ev and raw {(raw - valid) / n * 1e6:.1f} us/ev: "
          f"ratio {(raw - valid) / (ours - valid):.2f}")
    if args.shipper:
        print(f"        shipper: {snap['batches']} store writes in the last round, largest "
              f"batch {snap['largest_batch']}, mean {snap['events_out'] / snap['batches']:,.0f}")
    # the verdict on CPU time (the honest clock on a shared machine, module docstring)
    ours, raw = min(t[1] for t in ours_t), min(t[1] for t in raw_t)
    target = "issue 10 point 7" if args.shipper else "issue 2"
    print(f"TARGET ({target}, {name}, CPU time) >= 50,000 ev/s: {n / ours:,.0f} ev/s "
          f"{verdict(n / ours >= 50_000)}")
    print(f"TARGET ({target}, {name}, CPU time) >= 0.80x the raw load: {raw / ours:.2f}x "
          f"{verdict(raw / ours >= 0.8)}")
    if args.shipper:
        return
    if args.sqlite_only:
        return
    if args.es:
        ours_t, raw_t = bench_es(docs, args.es, args.batch, args.rounds)
    else:
        with throwaway_node(9270) as url:
            ours_t, raw_t = bench_es(docs, url, args.batch, args.rounds)
    ours, raw = min(ours_t), min(raw_t)
    print(f"elastic EventStore {n / ours:10,.0f} ev/s   raw helpers.bulk (orjson, filter_path) "
          f"{n / raw:10,.0f} ev/s   ratio {raw / ours:.2f}  (target >= 0.80)"
          f"\n        seconds, ours: {runs(ours_t)}; raw: {runs(raw_t)}")
    print(f"TARGET (issue 2, elastic, wall time) >= 0.80x helpers.bulk: {raw / ours:.2f}x "
          f"{verdict(raw / ours >= 0.8)}")


if __name__ == "__main__":
    main()
