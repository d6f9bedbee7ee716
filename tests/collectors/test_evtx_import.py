# ruff: noqa: E501  (real log lines and event records are longer than code lines)
"""Windows EVTX: a real Security log (the `evtx` package's own sample), damaged copies of
it, and Sysmon/System logs written as real EVTX files by `evtx_writer.py` (no Sysmon or
System sample ships in any package we can install), all read through `read_evtx`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from evtx_writer import with_resealed_damage, write_evtx

from collectors.logs import LogStats
from collectors.logs.evtx import EvtxError, map_record, read_evtx
from soc_core import ecs
from soc_core.store import Selection, open_store

SAMPLE = Path(__file__).parent / "data" / "Security_short_selected.evtx"
GOVSOC = str(Path(sys.executable).parent / "govsoc")


def _read(path) -> tuple[list[dict], LogStats]:
    out: list[dict] = []
    stats = read_evtx(str(path), out.append)
    return out, stats


def test_security_sample_maps_as_winlogbeat():
    docs, stats = _read(SAMPLE)
    assert stats.events_total == 7 and stats.bad_total == 0
    by_code = {}
    for d in docs:
        ecs.normalize(d)
        assert d["event"]["dataset"] == "system.security"
        assert d["winlog"]["channel"] == "Security" and d["host"]["name"] == "temporal"
        assert d["winlog"]["provider_name"] == "Microsoft-Windows-Security-Auditing"
        by_code.setdefault(d["winlog"]["event_id"], []).append(d)
    assert sorted(by_code) == ["4611", "4625", "4673", "4776", "5152", "5157"]
    (fail,) = by_code["4625"]
    assert fail["event"]["category"] == ["authentication"]
    assert fail["event"]["outcome"] == "failure" and fail["event"]["action"] == "logon-failed"
    assert fail["user"] == {"name": "Administrator", "domain": "TEMPORAL"}  # S-1-0-0 dropped
    assert fail["source"] == {"ip": "23.94.153.202", "port": 60167, "domain": "TEMPORAL"}
    assert fail["winlog"]["logon"] == {"type": "RemoteInteractive", "failure": {
        "status": "0xc000006d", "sub_status": "0xc000006a"}}
    assert fail["process"] == {"executable": "C:\\Windows\\System32\\winlogon.exe",
                               "name": "winlogon.exe", "pid": 0xC38}
    (cred,) = by_code["4776"]
    assert cred["event"]["outcome"] == "failure" and cred["user"]["name"] == "Administrator"
    drop = by_code["5152"][0]
    assert drop["source"] == {"ip": "23.94.153.202", "port": 59639}
    assert drop["destination"] == {"ip": "169.46.6.101", "port": 3389}
    assert drop["network"] == {"transport": "tcp", "direction": "inbound"}
    assert drop["winlog"]["record_id"] == "319457771"
    # ids come from (computer, channel, record id): a re-read gives the same ids
    again, _ = _read(SAMPLE)
    assert [d["event"]["id"] for d in again] == [d["event"]["id"] for d in docs]


def test_damaged_record_is_counted_and_the_rest_imported(tmp_path):
    # inside the third record's BinXML, the chunk's CRCs matching (damage after writing
    # withholds the whole chunk: tests/collectors/test_hostile_evtx.py)
    bad = tmp_path / "damaged.evtx"
    bad.write_bytes(with_resealed_damage(SAMPLE.read_bytes(), 7650, 7700))
    docs, stats = _read(bad)
    assert len(docs) == 6 and stats.bad_total == 1
    assert "damaged record skipped" in next(iter(stats.bad_reasons))


def test_truncated_file_is_reported(tmp_path):
    cut = tmp_path / "cut.evtx"
    cut.write_bytes(SAMPLE.read_bytes()[:9000])
    docs, stats = _read(cut)
    assert docs == []
    assert "file truncated: 0 of 1 chunks complete" in next(iter(stats.bad_reasons))


def test_not_evtx_is_an_error(tmp_path):
    p = tmp_path / "x.evtx"
    p.write_bytes(b"hello")
    with pytest.raises(EvtxError, match="not an EVTX file"):
        _read(p)


def _written(tmp_path, channel: str, provider: str, eid: int, rid: int, data: dict) -> dict:
    """One record written as a real EVTX file, read back through `read_evtx`."""
    path = write_evtx(tmp_path / f"{rid}.evtx", [{
        "channel": channel, "provider": provider, "event_id": eid, "record_id": rid,
        "time": datetime(2026, 11, 23, 2, 0, 0, 123456, tzinfo=UTC), "computer": "pc01.gov.local",
        "data": {k: str(v) for k, v in data.items()}}])
    (doc,), stats = _read(path)
    assert stats.bad_total == 0
    assert doc["@timestamp"] == "2026-11-23T02:00:00.123Z" and doc["winlog"]["record_id"] == str(rid)
    return doc


SYSMON = "Microsoft-Windows-Sysmon/Operational"


def test_sysmon_process_create(tmp_path):
    d = _written(tmp_path, SYSMON, "Microsoft-Windows-Sysmon", 1, 11, {
        "RuleName": "-", "UtcTime": "2026-11-23 02:00:00.120",
        "ProcessGuid": "{11111111-2222-3333-4444-555555555555}", "ProcessId": 4242,
        "Image": "C:\\Windows\\System32\\cmd.exe", "FileVersion": "10.0",
        "OriginalFileName": "Cmd.Exe", "CommandLine": "cmd.exe /c whoami",
        "CurrentDirectory": "C:\\Users\\li\\", "User": "GOV\\li.lei",
        "Hashes": "SHA1=AA,MD5=BB,SHA256=CC,IMPHASH=DD",
        "ParentProcessGuid": "{99999999-2222-3333-4444-555555555555}", "ParentProcessId": 100,
        "ParentImage": "C:\\Windows\\explorer.exe", "ParentCommandLine": "explorer.exe"})
    ecs.normalize(d)
    assert d["event"]["dataset"] == "windows.sysmon_operational"
    assert d["event"]["category"] == ["process"] and d["event"]["type"] == ["start"]
    assert d["winlog"]["event_id"] == "1" and d["winlog"]["user"]["identifier"] == "S-1-5-18"
    p = d["process"]
    assert (p["pid"], p["name"], p["command_line"]) == (4242, "cmd.exe", "cmd.exe /c whoami")
    assert p["parent"] == {"executable": "C:\\Windows\\explorer.exe", "name": "explorer.exe",
                           "pid": 100, "command_line": "explorer.exe",
                           "entity_id": "{99999999-2222-3333-4444-555555555555}"}
    assert p["hash"] == {"sha1": "aa", "md5": "bb", "sha256": "cc"}
    assert p["pe"]["original_file_name"] == "Cmd.Exe"
    assert d["user"] == {"name": "li.lei", "domain": "GOV"}
    assert d["winlog"]["event_data"]["CommandLine"] == "cmd.exe /c whoami"


def test_sysmon_network_and_dns(tmp_path):
    net = _written(tmp_path, SYSMON, "Microsoft-Windows-Sysmon", 3, 12, {
        "ProcessId": "4242", "Image": "C:\\a\\b.exe", "User": "GOV\\li", "Protocol": "tcp",
        "Initiated": "true", "SourceIp": "10.1.1.5", "SourcePort": "50000",
        "DestinationIp": "203.0.113.80", "DestinationPort": "443"})
    assert net["source"] == {"ip": "10.1.1.5", "port": 50000}
    assert net["destination"] == {"ip": "203.0.113.80", "port": 443}
    assert net["network"] == {"transport": "tcp", "direction": "outbound"}
    dns = _written(tmp_path, SYSMON, "Microsoft-Windows-Sysmon", 22, 13, {
        "ProcessId": "1", "Image": "C:\\x.exe", "QueryName": "evil.example",
        "QueryResults": "::ffff:198.51.100.1;type:  5 cname.example;"})
    assert dns["dns"] == {"question": {"name": "evil.example"}, "resolved_ip": ["198.51.100.1"]}


def test_system_service_installed_and_security_4688(tmp_path):
    svc = _written(tmp_path, "System", "Service Control Manager", 7045, 14, {
        "ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe",
        "ServiceType": "user mode service", "StartType": "demand start", "AccountName": "LocalSystem"})
    assert svc["event"]["dataset"] == "system.system" and svc["service"]["name"] == "PSEXESVC"
    assert svc["event"]["action"] == "service-installed"
    proc = _written(tmp_path, "Security", "Microsoft-Windows-Security-Auditing", 4688, 15, {
        "SubjectUserSid": "S-1-5-21-1", "SubjectUserName": "li", "SubjectDomainName": "GOV",
        "SubjectLogonId": "0x3e7", "NewProcessId": "0x1a4", "NewProcessName": "C:\\w\\ps.exe",
        "ProcessId": "0x10", "CommandLine": "ps.exe -enc AAA", "ParentProcessName": "C:\\w\\cmd.exe"})
    assert proc["process"]["pid"] == 0x1A4 and proc["process"]["parent"]["pid"] == 0x10
    assert proc["process"]["command_line"] == "ps.exe -enc AAA"
    assert proc["user"] == {"name": "li", "domain": "GOV", "id": "S-1-5-21-1"}


def test_record_without_system_block_is_rejected():
    with pytest.raises(KeyError):
        map_record({"Event": {"EventData": {}}})


def _record(**system) -> dict:
    base = {"Provider": {"#attributes": {"Name": "P", "Guid": "{AB-CD}"}}, "EventID": 4688,
            "Version": 2, "Level": 0, "Task": 13312, "Opcode": 0, "Keywords": "0x80",
            "TimeCreated": {"#attributes": {"SystemTime": "2019-04-27T15:57:25.868863Z"}},
            "EventRecordID": 6575, "Execution": {"#attributes": {"ProcessID": 4, "ThreadID": 8}},
            "Channel": "Security", "Computer": "ws1",
            "Security": {"#attributes": {"UserID": "S-1-5-18"}}}
    base.update(system)
    return {"Event": {"System": {k: v for k, v in base.items() if v is not ...},
                      "EventData": {"NewProcessName": "C:\\w\\a.exe", "ProcessId": "0x10"}}}


@pytest.mark.parametrize("system", [
    {},
    {"TimeCreated": {"#attributes": {"SystemTime": "2019-04-27T15:57:25.8688Z"}}},
    {"TimeCreated": {"#attributes": {"SystemTime": "2019-W17-6T15:57:25.868863Z"}}},
    {"TimeCreated": {"#attributes": {"SystemTime": "2019-04-27T17:57:25.868863+02:00"}}},
    {"EventID": {"#text": "4688", "#attributes": {"Qualifiers": 0}}, "EventRecordID": "7",
     "Channel": {"#text": "Security"}, "Version": "3", "Task": True, "Security": None},
    {"Execution": ..., "Security": {}, "Keywords": None, "Provider": {"#attributes": {}}},
])
def test_lazy_record_is_the_event_map_record_makes(system):
    """`EvtxRecord` (the hunt's record: its id and time cut short, its winlog block made on
    demand) answers as `map_record`'s event, whatever the values' types and time forms."""
    from collectors.logs.evtx import EvtxRecord

    rec = _record(**system)
    doc = map_record(rec)
    lazy = EvtxRecord(rec)
    assert (lazy.id, lazy.timestamp, lazy.dataset) == (
        doc["event"]["id"], doc["@timestamp"], doc["event"]["dataset"])
    filled: dict = {}
    assert lazy.fill(filled)
    for path in ("winlog.channel", "winlog.event_id", "winlog.provider_name",
                 "winlog.computer_name", "winlog.record_id", "winlog.event_data.ProcessId"):
        assert filled[path] == lazy.get(path) == ecs.get_field(doc, path)
    assert lazy.event() == doc


@pytest.mark.parametrize("system", [
    {"Provider": {"#attributes": {"Name": "P", "Guid": 7}}},
    {"Execution": "4"},
    {"Execution": {"#attributes": "4"}},
    {"Security": {"#attributes": None}},
    {"TimeCreated": {"#attributes": {"SystemTime": "2019-04-27T25:57:25.868863Z"}}},
])
def test_lazy_record_refuses_what_map_record_refuses(system):
    from collectors.logs.evtx import EvtxRecord

    rec = _record(**system)
    with pytest.raises((AttributeError, ValueError)) as made:
        map_record(rec)
    with pytest.raises(made.type):
        EvtxRecord(rec)


def test_cli_imports_and_rejects_non_evtx(tmp_path):
    env = {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/g.db", "GOVSOC_DATA_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    shutil.copy(SAMPLE, tmp_path / "s.evtx")
    (tmp_path / "bad.evtx").write_text("not evtx")
    r = subprocess.run([GOVSOC, "collect", "evtx", str(tmp_path / "s.evtx"),
                        str(tmp_path / "bad.evtx")], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().endswith("not an EVTX file (bad signature)")
    assert len(r.stderr.strip().splitlines()) == 1
    write_evtx(tmp_path / "sysmon.evtx", [{
        "channel": SYSMON, "provider": "Microsoft-Windows-Sysmon", "event_id": 22,
        "record_id": 1, "time": datetime(2026, 11, 23, tzinfo=UTC), "computer": "pc02",
        "data": {"ProcessId": "7", "Image": "C:\\x.exe", "QueryName": "c2.example"}}])
    r = subprocess.run([GOVSOC, "collect", "evtx", str(tmp_path / "s.evtx"),
                        str(tmp_path / "sysmon.evtx")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "8 events" in r.stdout and "written 8 new" in r.stdout
    with open_store(env["GOVSOC_STORE_URL"]) as store:
        assert store.count(Selection(dataset="system.security")) == 7
        (dns,) = list(store.scan(Selection(dataset="windows.sysmon_operational")))
    assert dns["dns"]["question"]["name"] == "c2.example" and dns["host"]["name"] == "pc02"


@pytest.mark.parametrize("data", [
    {"A": "x", "B": 7, "C": True, "D": 1.5},  # scalars: the one-pass flattening
    {"A": "x", "B": None, "C": {"#text": 3}, "D": ["p", {"#text": "q"}]},  # the slow path
    {"#attributes": "odd", "A": 2},  # an attribute of no object shape is no data name
    {"#attributes": {"Name": "n"}, "A": "x"},
])
def test_event_data_flattens_as_winlogbeat_writes_it(data):
    """EventData values as strings, whatever their JSON type (a number as its digits, a
    list joined, an absent value left out, the block's own attributes no field): the
    event's and the lazy record's fields are the same."""
    from collectors.logs.evtx import EvtxRecord

    rec = _record()
    rec["Event"]["EventData"] = data
    want = {"A": "x", "B": "7", "C": "True", "D": "1.5"}
    if "B" in data and data["B"] is None:
        want = {"A": "x", "C": "3", "D": "p, q"}
    elif "#attributes" in data:
        want = {"A": "2"} if data["A"] == 2 else {"A": "x"}
    assert map_record(rec)["winlog"]["event_data"] == want
    filled: dict = {}
    assert EvtxRecord(rec).fill(filled)
    assert {k[18:]: v for k, v in filled.items() if k.startswith("winlog.event_data.")} == want


def test_unnamed_data_elements_are_params_and_the_whole_data(shared_dir):
    """Several unnamed <Data> elements (the parser gives {"Data": {"#text": [...]}}): each as
    Winlogbeat names it (param1...), and `Data` holding them all joined, for SigmaHQ's rules
    that search it (`Data|contains`), never a Python list's repr (quotes, doubled
    backslashes). A real MSSQL record, then a path that a repr would have mangled."""
    from collectors.logs.evtx import EvtxRecord

    sample = (shared_dir / "evtx" / "EVTX-ATTACK-SAMPLES" / "Lateral Movement" /
              "MSSQL_15281_xp_cmdshell_exec_failed_attempt.evtx")
    (event,), _ = _read(sample)
    data = event["winlog"]["event_data"]
    assert event["winlog"]["event_id"] == "15281"
    assert [data[f"param{i}"] for i in range(1, 4)] == ["procedure", "sys.xp_cmdshell",
                                                        "xp_cmdshell"]
    assert data["Data"].startswith("procedure, sys.xp_cmdshell, xp_cmdshell") and \
        "[" not in data["Data"] and "'" not in data["Data"]
    rec = _record()
    rec["Event"]["EventData"] = {"Data": {"#text": ["C:\\w\\a.exe", None, 5]}}
    want = {"param1": "C:\\w\\a.exe", "param2": "", "param3": "5", "Data": "C:\\w\\a.exe, , 5"}
    assert map_record(rec)["winlog"]["event_data"] == want
    filled: dict = {}
    assert EvtxRecord(rec).fill(filled)
    assert {k[18:]: v for k, v in filled.items() if k.startswith("winlog.event_data.")} == want


def test_records_of_one_shape_share_group_and_layout(shared_dir):
    """`EvtxRecord.shape()` (what the hunt's evaluator groups records by without reading
    their fields): over the real sample corpus, records of one shape have one dataset, the
    same channel, event id and provider, and fill the same paths."""
    from collectors.logs.evtx import EvtxRecord

    seen: dict = {}
    shapes = 0
    for f in sorted((shared_dir / "evtx" / "EVTX-ATTACK-SAMPLES").rglob("*.evtx"))[::3]:
        records: list = []
        read_evtx(str(f), records.append, lazy=True)
        for rec in records:
            shape = rec.shape()
            if shape is None:
                continue
            filled: dict = {}
            assert rec.fill(filled)
            got = (rec.dataset, tuple(rec.get(p) for p in sorted(EvtxRecord.SHAPED)),
                   tuple(filled))
            shapes += shape not in seen
            assert seen.setdefault(shape, got) == got, f
    assert shapes > 20 and len(seen) == shapes
