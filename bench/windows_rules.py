"""SigmaHQ's Windows rules over the real EVTX samples of ../shared/evtx, each rule's compiled
query run directly on each store: what Sigma's matching semantics cost (case-insensitive
strings, `|re`, fields in EventData or UserData) and what they find.

    python bench/windows_rules.py [--rules windows/process_creation] [--es URL] [--rounds 3]

Reference, in the same run: per rule, the same rows read without the rule's condition
(SQLite `count(*)` over the rule's datasets; Elasticsearch a `match_all` count on the same
indices), so the ratio is the condition's own cost. SQLite figures are CPU seconds of this
process (the store is in-process); Elasticsearch ones the `took` milliseconds the node
reports, summed. Matches are (rule, event) pairs; with `--es`, each rule whose matches differ
between the stores is named. Run it at two commits to compare them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors.logs import read_evtx  # noqa: E402
from detections.rules import load_pack  # noqa: E402
from soc_core.store import open_store  # noqa: E402
from soc_core.store.sqlite import connect  # noqa: E402

SHARED = ROOT.parent / "shared"


def evtx_docs() -> list[dict]:
    docs: list[dict] = []
    for path in sorted((SHARED / "evtx").rglob("*.evtx")):
        read_evtx(str(path), docs.append)
    return docs


def sqlite_round(path: str, rules) -> tuple[float, float, set]:
    conn = connect(path)
    cond = ref = 0.0
    matches = set()
    for r in rules:
        marks = ",".join("?" * len(r.datasets))
        where = f"family = 'events' AND dataset IN ({marks})"
        t = time.process_time()
        rows = conn.execute(f"SELECT id FROM docs WHERE {where} AND "
                            f"({r.queries['sqlite']})", r.datasets).fetchall()
        cond += time.process_time() - t
        matches.update((r.id, row[0]) for row in rows)
        t = time.process_time()
        conn.execute(f"SELECT count(*) FROM docs WHERE {where}", r.datasets).fetchall()
        ref += time.process_time() - t
    conn.close()
    return cond, ref, matches


def es_round(store, rules) -> tuple[float, float, set]:
    cond = ref = 0.0
    matches = set()
    for r in rules:
        index = ",".join(f"logs-govsoc.{d}-{store.namespace}" for d in r.datasets)
        q = {"query_string": {"query": r.queries["elasticsearch"],
                              "default_field": "message", "lenient": True}}
        resp = store.es.search(index=index, query=q, size=10_000, source=False,
                               ignore_unavailable=True, allow_no_indices=True,
                               track_total_hits=False)
        cond += resp["took"]
        matches.update((r.id, hit["_id"]) for hit in resp["hits"]["hits"])
        resp = store.es.search(index=index, query={"match_all": {}}, size=0,
                               ignore_unavailable=True, allow_no_indices=True,
                               track_total_hits=True)
        ref += resp["took"]
    return cond / 1000, ref / 1000, matches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", default="windows/process_creation",
                    help="folder under ../shared/sigma/rules")
    ap.add_argument("--es", default=None, help="also on this Elasticsearch")
    ap.add_argument("--rounds", type=int, default=3, help="best of N")
    args = ap.parse_args()
    docs = evtx_docs()
    t = time.perf_counter()
    pack = load_pack([SHARED / "sigma" / "rules" / args.rules])
    backends = ["sqlite"] + (["elasticsearch"] if args.es else [])
    rules = [r for r in pack.rules if not r.is_correlation and r.datasets
             and all(b in r.queries for b in backends)]
    print(f"{len(docs)} EVTX records; {len(rules)} rules of {args.rules} "
          f"(loaded in {time.perf_counter() - t:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/w.db")
        assert not store.write(docs).rejected
        store.optimize()
        store.close()
        runs = [sqlite_round(f"{tmp}/w.db", rules) for _ in range(args.rounds)]
        cond, ref, lite = min(runs, key=lambda x: x[:2])
        print(f"sqlite   conditions {cond:6.2f} s CPU   reference {ref:6.2f} s   "
              f"ratio {cond / ref:5.2f}x   {len(lite)} matches   "
              f"[rounds: {', '.join(f'{c:.2f}' for c, _, _ in runs)}]")
    if args.es:
        store = open_store(args.es, namespace=f"bw{time.time_ns() % 10**10}")
        try:
            assert not store.write(docs, refresh=True).rejected
            runs = [es_round(store, rules) for _ in range(args.rounds)]
            cond, ref, es = min(runs, key=lambda x: x[:2])
            print(f"elastic  conditions {cond:6.2f} s took  reference {ref:6.2f} s   "
                  f"ratio {cond / ref:5.2f}x   {len(es)} matches   "
                  f"[rounds: {', '.join(f'{c:.2f}' for c, _, _ in runs)}]")
            # the stores must agree on every (rule, record): name each rule that does not
            title = {r.id: r.title for r in rules}
            for rid in sorted({m[0] for m in lite ^ es}, key=title.get):
                only_lite = sum(1 for m in lite - es if m[0] == rid)
                only_es = sum(1 for m in es - lite if m[0] == rid)
                print(f"  differs: {title[rid]} (SQLite only {only_lite}, "
                      f"Elasticsearch only {only_es})")
        finally:
            store.drop_all()
            store.close()


if __name__ == "__main__":
    main()
