"""What an Elasticsearch node does with a steady stream of audit records, without the API:
sign records (as the crypto service writes them) sealed by a real `AuditTrail` and written
straight to a throw-away node in bulks of `--batch` at `--rate` records a second; every ~2 s
the node's CPU (cores, from /proc) and the audit index's refresh, flush and merge counts,
segments, indexing-buffer memory and translog size. Shows when the node works in bursts
(its indexing buffer written out, the shard's periodic flush, merges) and what an index
setting changes (`--settings '{"index":{"refresh_interval":"5s"}}'`).

    python bench/es_audit_flow.py [--rate 3400] [--batch 250] [--seconds 150] [--settings JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import api  # noqa: E402
from eslocal import throwaway_node  # noqa: E402
from ports import free_port  # noqa: E402


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=3400, help="records a second")
    ap.add_argument("--batch", type=int, default=250, help="records a bulk")
    ap.add_argument("--seconds", type=int, default=150)
    ap.add_argument("--settings", default=None, help="audit index settings (JSON) to put")
    args = ap.parse_args()
    with throwaway_node(free_port()) as url, tempfile.TemporaryDirectory() as folder:
        api.write_config(Path(folder), url, "flow")
        from crypto_svc.audit import key_record
        from soc_core.audit import AuditTrail, prepared_record
        from soc_core.store import open_store

        store = open_store(url)
        trail = AuditTrail(Path(folder) / "audit", store=None, name="flow")
        node = api.node_pid(url)
        hz = os.sysconf("SC_CLK_TCK")

        def records(n: int) -> list:
            out = []
            for _ in range(n):
                doc = trail.record(**key_record(
                    action="sign", outcome="success", user="bench-signer", key_id="k-bench",
                    version=1, purpose="sign", input_sm3=os.urandom(32).hex(), input_bytes=35,
                    role=("service",), source_ip="127.0.0.1", request_id=os.urandom(12).hex()))
                out.append(prepared_record(doc, orjson.dumps(doc)))
            return out

        store.write(records(10))  # the index exists
        index = "govsoc-audit-flow"
        if args.settings:
            req = urllib.request.Request(f"{url}/{index}/_settings", method="PUT",
                                         data=args.settings.encode(),
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=30).read()
        t0 = last_t = due = time.monotonic()
        last_c = _ticks(node)
        while time.monotonic() - t0 < args.seconds:
            docs = records(args.batch)
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            due += args.batch / args.rate
            store.write(docs)
            if time.monotonic() - last_t >= 2.0:
                s = _get(f"{url}/{index}/_stats/refresh,flush,merge,segments,translog,"
                         "indexing")["_all"]["primaries"]
                c, now = _ticks(node), time.monotonic()
                print(f"t={now - t0:5.1f} s  node {(c - last_c) / hz / (now - last_t):.2f} cores"
                      f"  refreshes {s['refresh']['total']}  flushes {s['flush']['total']}"
                      f"  merges {s['merges']['total']}  segments {s['segments']['count']}"
                      f"  buffer {s['segments']['index_writer_memory_in_bytes'] >> 20} MB"
                      f"  translog {s['translog']['uncommitted_size_in_bytes'] >> 20} MB"
                      f"  records {s['indexing']['index_total']}"
                      f"  load {os.getloadavg()[0]:.1f}", flush=True)
                last_c, last_t = c, now
        trail.close()
        store.close()


if __name__ == "__main__":
    main()
