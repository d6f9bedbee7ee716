"""`govsoc hunt` as an incident responder runs it on evidence files: real captures and
EVTX samples from ../shared, a Linux auth log, and a file that is none of these."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"
GOVSOC = str(Path(sys.executable).parent / "govsoc")
SSH_PCAP = SHARED / "pcaps" / "try-zeek" / "ssh.pcap"
BENIGN_PCAP = SHARED / "pcaps" / "zeek" / "ftp_ipv4.pcap"
EVTX = SHARED / "evtx" / "EVTX-ATTACK-SAMPLES" / "Defense Evasion"


def _hunt(args, tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([GOVSOC, "hunt", *map(str, args)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600,
                          env={**os.environ, "GOVSOC_DATA_DIR": str(tmp_path / "data"), **env})


def _auth_log(folder: Path) -> Path:
    lines = [f"2024-03-01T02:00:{i:02d}+00:00 gov-web-01 sshd[{900 + i}]: Failed password for "
             f"root from 203.0.113.7 port {41000 + i} ssh2" for i in range(12)]
    path = folder / "auth.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_findings_grouped_by_host_and_rule(tmp_path):
    evidence = tmp_path / "case"
    evidence.mkdir()
    _auth_log(evidence)
    (evidence / "README.md").write_text("# case 2024-017\nnotes, not a log\n")
    r = _hunt([evidence, SSH_PCAP, "--json"], tmp_path)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    # a note beside the logs in a folder is listed, not read (named on its own: an error)
    assert sorted(i["kind"] for i in out["imported"]) == ["auth", "pcap", "skipped"]
    found = {(f["host"], f["rule"]): f for f in out["findings"]}
    guess = found[("172.16.238.1", "SSH password guessing seen on the network")]
    assert guess["level"] == "high" and guess["events"] >= 30
    assert ("gov-web-01", "SSH brute force from one source") in found
    # the span is the evidence's own: 2011 for the capture, 2024 for the log
    assert out["span"]["start"].startswith("2011-11-04T19:37")
    assert out["span"]["end"].startswith("2024-03-01T02:00:11")


def test_nothing_found_is_exit_zero_and_csv_timeline(tmp_path):
    r = _hunt([BENIGN_PCAP], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no findings" in r.stdout
    r = _hunt([SSH_PCAP, "--timeline", "--csv"], tmp_path)
    assert r.returncode == 1
    rows = r.stdout.splitlines()
    assert rows[0] == "time,level,host,rule,message,source_ip,user"
    times = [row.split(",")[0] for row in rows[1:]]
    assert times == sorted(times) and len(times) >= 2


def test_evtx_evidence(tmp_path):
    r = _hunt([EVTX, "--json", "--min-level", "high"], tmp_path)
    assert r.returncode in (0, 1), r.stderr
    out = json.loads(r.stdout)
    assert {i["kind"] for i in out["imported"]} == {"evtx"}
    assert out["events"] > 100
    assert all(f["level"] in ("high", "critical") for f in out["findings"])


def test_bad_evidence_is_one_error_line(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01binary" * 10)
    r = _hunt([SSH_PCAP, junk], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"error: {junk}: not a pcap/pcapng capture, EVTX file or "
                                f"text log")
    note = tmp_path / "notes.md"
    note.write_text("# not a log\n")
    r = _hunt([note], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"error: {note}: not a pcap/pcapng capture, EVTX file or "
                                f"text log")
    r = _hunt([tmp_path / "missing.pcap"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: no such file or folder: {tmp_path / 'missing.pcap'}"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("es", marks=pytest.mark.es)])
def test_hunt_into_a_given_store(backend, tmp_path, request):
    env = {}
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/kept.db"
    else:
        url = request.getfixturevalue("es_url")
        env["GOVSOC_ES_NAMESPACE"] = "t" + uuid.uuid4().hex[:10]
    r = _hunt([SSH_PCAP, "--store", url, "--json"], tmp_path, **env)
    assert r.returncode == 1, r.stderr
    from soc_core.store import Selection, open_store

    store = (open_store(url, namespace=env["GOVSOC_ES_NAMESPACE"]) if env
             else open_store(url))
    try:
        store.refresh()
        rules = {a["rule"]["name"] for a in store.scan(Selection(family="alerts"))}
        assert "SSH password guessing seen on the network" in rules
        assert store.count(Selection(dataset="network.flow")) == 41
    finally:
        if env:
            store.drop_all()
        store.close()


def test_scratch_hunt_finds_what_a_hunt_into_a_store_finds(tmp_path):
    """Without --store the alerts stay in memory (`AlertTable`); with it they go through
    the store: the same evidence gives the same findings and timeline either way."""
    url = f"sqlite:///{tmp_path}/kept.db"
    runs = {}
    for name, extra in (("scratch", []), ("store", ["--store", url])):
        for view in ("--json", "--timeline"):
            r = _hunt([EVTX, SSH_PCAP, *extra, view, "--csv" if view == "--timeline" else
                       "--min-level=low"], tmp_path)
            assert r.returncode == 1, r.stderr
            runs[name, view] = r.stdout
    scratch, stored = json.loads(runs["scratch", "--json"]), json.loads(runs["store", "--json"])
    assert len(scratch["findings"]) >= 4
    assert scratch["findings"] == stored["findings"]
    assert runs["scratch", "--timeline"] == runs["store", "--timeline"]


def test_alert_table_writes_as_a_store_compares_and_sets():
    """The hunt's in-memory alerts: a write names the version it read (None: absent), a
    stale one is a conflict and changes nothing, an invalid document is rejected with its
    reason, and what is kept is the document as the store would keep it."""
    from detections.memory import AlertTable

    table = AlertTable()
    alert = {"@timestamp": "2024-03-01T02:00:00.000Z", "message": "x",
             "event": {"kind": "alert", "id": "a-1", "dataset": "govsoc.alert"}}
    assert table.write_many_if([(alert, None)]).written == 1
    doc, version = table.read_versioned_many("alerts", ["a-1", "a-2"])["a-1"]
    assert doc["ecs"]["version"] and table.read_versioned_many("alerts", ["a-2"]) == {}
    again = table.write_many_if([({**alert, "message": "y"}, None)])
    assert (again.written, again.conflicts) == (0, ["a-1"])
    assert table.write_many_if([({**alert, "message": "z"}, version)]).written == 1
    assert table.write_many_if([({**alert, "message": "w"}, version)]).conflicts == ["a-1"]
    assert [a["message"] for a in table.alerts()] == ["z"]
    bad = table.write_many_if([({"event": {"id": "a-3", "dataset": "govsoc.alert"}}, None)])
    assert bad.written == 0 and "@timestamp" in bad.rejected[0].reason
    with pytest.raises(ValueError):
        table.read_versioned_many("events", ["a-1"])


@pytest.mark.parametrize("import_all", [False, True])
def test_hunt_in_memory_reads_without_collector_passes(tmp_path, monkeypatch, import_all):
    """An in-memory hunt reads its evidence with the cyclic collector off (its passes only
    walked the kept events); with `--store` the collector runs, its thresholds raised.
    Either way the collector's state is as it was when the hunt ends, and what the hunt
    returns waits in the oldest generation, out of the young passes' way."""
    import gc

    from detections import hunt as hunt_mod
    from soc_core.store import open_store

    seen = {}
    real = hunt_mod.importer()

    def importer():
        def read(*args, **kwargs):
            seen["enabled"], seen["threshold"] = gc.isenabled(), gc.get_threshold()
            return real(*args, **kwargs)
        return read

    monkeypatch.setattr(hunt_mod, "importer", importer)
    before = gc.get_threshold()
    assert gc.isenabled()
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        out = hunt_mod.hunt(store, [str(EVTX)], [], import_all=import_all)
    finally:
        store.close()
    assert out["events"] > 100 and out["alerts"]
    assert seen["enabled"] is import_all
    assert seen["threshold"] == hunt_mod.HUNT_GC_THRESHOLDS
    assert gc.isenabled() and gc.get_threshold() == before and gc.get_freeze_count() == 0
    young = {id(o) for o in gc.get_objects(generation=0) + gc.get_objects(generation=1)}
    assert not any(id(a) in young or id(a["govsoc"]) in young for a in out["alerts"])
