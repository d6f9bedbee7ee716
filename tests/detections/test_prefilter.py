"""The hunt's native EVTX filter (`detections._native`, `native/evtx_filter`): what it reads
from a record is what the Python reader reads, and what the hunt finds through it is what
the Python evaluator finds reading every record itself."""

from __future__ import annotations

import collections
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from evtx import PyEvtxParser
from evtx_writer import with_chunk_repeated, with_resealed_damage, write_evtx

from collectors.logs import read_evtx
from collectors.logs.evtx import _DATASETS, EvtxRecord
from detections import prefilter
from detections.evaluator import Evaluator
from detections.hunt import hunt
from detections.memory import hunt_rules
from detections.rules import OWN_PACK
from soc_core.records import UnmatchedRecords
from soc_core.store import open_store

SHARED = Path(__file__).resolve().parents[3] / "shared"
SAMPLES = SHARED / "evtx" / "EVTX-ATTACK-SAMPLES"
SECURITY = (Path(__file__).resolve().parents[1] / "collectors" / "data" /
            "Security_short_selected.evtx")
SYSMON = "Microsoft-Windows-Sysmon/Operational"


def test_the_native_filter_is_installed():
    # `make test` builds it into the wheel; without it hunts fall back to Python, slowly
    assert prefilter.available()


def _python_view(rec: dict):
    """(stored time, field values in fill order, (dataset, id)) as the Python reader
    has them, or the exception it raises."""
    r = EvtxRecord(rec)
    filled: dict = {}
    assert r.fill(filled)
    return r.timestamp, list(filled.values()), (r.dataset, r.id)


def _native_view(json: str):
    from detections import _native

    found = _native.plain_fields(json, _DATASETS)
    if found is None:
        return None
    stored, values, made = found
    return stored, values, made


def test_every_plain_record_reads_as_the_python_reader_reads_it():
    """Every record of the real corpus: those the native reader calls plain have the
    time, field values (in the evaluator's order) and event identity the Python reader
    gives them; nearly all are plain (the rest reach Python whole)."""
    seen = plain = 0
    for f in sorted(SAMPLES.rglob("*.evtx")):
        for item in PyEvtxParser(str(f), number_of_threads=1).records_json():
            seen += 1
            got = _native_view(item["data"])
            if got is None:
                continue
            plain += 1
            want = _python_view(orjson.loads(item["data"]))
            assert got[:2] == want[:2], (f.name, item["event_record_id"])
            assert got[2] in (None, want[2]), (f.name, item["event_record_id"])
    assert seen > 8000 and plain >= 0.99 * seen


def _record(data, **system) -> dict:
    base = {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon",
                                         "Guid": "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}"}},
            "EventID": 1, "Version": 5, "Level": 4,
            "TimeCreated": {"#attributes": {"SystemTime": "2026-11-27T15:57:25.868863Z"}},
            "EventRecordID": 6575, "Execution": {"#attributes": {"ProcessID": 4}},
            "Channel": SYSMON, "Computer": "ws1.gov.local",
            "Security": {"#attributes": {"UserID": "S-1-5-18"}}}
    base.update(system)
    event = {"System": {k: v for k, v in base.items() if v is not ...}}
    if data is not ...:
        event["EventData"] = data
    return {"Event": event}


@pytest.mark.parametrize("rec", [
    _record({"Image": "C:\\w\\a.exe", "Pid": 7, "Up": True, "Gone": None}),
    _record({"Data": {"#text": ["C:\\w", None, 5, {"#text": "q"}]}, "Binary": None}),
    _record({"#attributes": {"Name": "n"}, "A": ["p", {"#text": "q"}, None]}),
    _record(..., Channel=None, Computer=None),  # an ETW capture: no channel, no computer
    _record({"CommandLine": "Ä\u0130\u03a3 \"q\" \u0007\n"}, Computer="Ünïcode-PC"),
    _record({"A": "x"}, Computer="o'brien", EventID={"#attributes": {"Qualifiers": 0},
                                                     "#text": 4688}),
    _record({"A": "x"}, EventRecordID=18446744073709551615),
])
def test_crafted_plain_records_read_as_python_reads_them(rec):
    want = _python_view(rec)
    got = _native_view(orjson.dumps(rec).decode())
    assert got is not None and got[:2] == want[:2] and got[2] in (None, want[2])


@pytest.mark.parametrize("rec", [
    _record({"A": 1.5}),  # a float: Python's repr is not the JSON's text
    _record({"a.b": "x"}),  # a dotted name nests in the event
    _record({"Data": {"#text": ["x"]}, "param1": "y"}),  # a name met twice
    _record({"A": {"#text": ["x", ["y"]]}}),
    _record({"A": "x"}, TimeCreated={"#attributes": {"SystemTime": "2026-13-27T15:57:25.868863Z"}}),
    _record({"A": "x"}, TimeCreated={"#attributes": {"SystemTime": "2026-02-29T15:57:25.868863Z"}}),
    _record({"A": "x"}, Channel={"#text": "Security"}),
    _record({"A": "x"}, Execution="4"),
    _record({"A": "x"}, Provider={"#attributes": {"Name": "P", "Guid": 7}}),
])
def test_records_not_plain_go_to_python_whole(rec):
    """What the native reader cannot read as Python does (or what Python refuses) is
    handed over whole, to the Python reader and its errors."""
    assert _native_view(orjson.dumps(rec).decode()) is None


RULES = """
title: whoami all
id: 11111111-0000-4000-8000-000000000001
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|endswith: '\\whoami.exe', CommandLine|contains|windash: ' /all'}
  condition: sel
level: high
---
title: encoded powershell
id: 11111111-0000-4000-8000-000000000002
logsource: {product: windows, category: process_creation}
detection:
  sel:
    Image|endswith: '\\powershell.exe'
    CommandLine|re: '(?i)-e(nc|ncodedcommand)?\\s+[a-z0-9+/=]{16,}'
  condition: sel
level: high
---
title: dotted greek
id: 11111111-0000-4000-8000-000000000003
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|contains: 'İσ'}
  condition: sel
level: medium
---
title: cased
id: 11111111-0000-4000-8000-000000000004
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|cased|contains: 'MiXeD'}
  filter: {User|exists: true, ParentImage|startswith: 'C:\\Windows\\'}
  condition: sel and not filter
level: low
---
title: wildcard inside
id: 11111111-0000-4000-8000-000000000005
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine: '*net*user*/add*', IntegrityLevel|gt: 3}
  condition: sel
level: medium
"""

LINES = [
    ("C:\\Windows\\System32\\whoami.exe", "whoami /all", {}),
    ("C:\\Windows\\System32\\WHOAMI.EXE", "WhoAmI -ALL", {}),
    ("C:\\Windows\\System32\\whoami.exe", "whoami /groups", {}),
    ("C:\\p\\powershell.exe", "powershell -Enc SQBFAFgAIAAoAE4AZQB3AC0A", {}),
    ("C:\\p\\powershell.exe", "powershell -NoProfile", {}),
    ("C:\\x\\t.exe", "echo İΣ \"quoted\" \\ tab\tend", {}),
    ("C:\\x\\t.exe", "echo iσ", {}),
    ("C:\\x\\t.exe", "x MiXeD", {"ParentImage": "C:\\Users\\a.exe"}),
    ("C:\\x\\t.exe", "x MiXeD", {"ParentImage": "C:\\Windows\\e.exe", "User": "S"}),
    ("C:\\x\\t.exe", "x mixed", {"ParentImage": "C:\\Users\\a.exe"}),
    ("C:\\x\\net.exe", "net user bob /add", {"IntegrityLevel": "High"}),
    ("C:\\x\\net.exe", "net user bob /del", {"IntegrityLevel": "High"}),
]


def _evidence(folder: Path, copies: int = 30) -> list[Path]:
    """Sysmon process creations written as real EVTX files: the same lines many times
    (other record ids), so that the filter meets shapes the evaluator has planned (it
    plans after each batch of 256 records it matched)."""
    t0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    out = []
    for c in range(copies):
        records = [{"channel": SYSMON, "provider": "Microsoft-Windows-Sysmon", "event_id": 1,
                    "record_id": 1 + c * 100 + i, "time": t0 + timedelta(seconds=c * 100 + i),
                    "computer": "ws1.gov.local",
                    "data": {"Image": img, "CommandLine": cmd, **extra}}
                   for i, (img, cmd, extra) in enumerate(LINES)]
        out.append(write_evtx(folder / f"c{c}.evtx", records))
    return out


def _hunt(paths, rules: Path, native: bool, made: list | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/h.db")
        try:
            return hunt(store, [str(p) for p in paths], [str(rules)], native=native)
        finally:
            store.close()


def test_hunt_finds_the_same_through_the_filter(tmp_path, monkeypatch):
    """Crafted records (case, non-ASCII, quotes and control characters, a regular
    expression, a wildcard inside a value, a cased rule, `not`, `exists`, a comparison)
    found alike with and without the filter, the filter having decided most of them
    itself (no record handed over whole after the first file)."""
    monkeypatch.setenv("GOVSOC_CACHE_DIR", str(tmp_path / "cache"))
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    paths = _evidence(tmp_path)
    made: list = []
    real = prefilter.EvtxPrefilter

    class Spy(real):
        def __init__(self, ev):
            super().__init__(ev)
            made.append(self)

    monkeypatch.setattr(prefilter, "EvtxPrefilter", Spy)
    native = _hunt(paths, rules, native=True)
    alone = _hunt(paths, rules, native=False)
    assert len(made) == 1
    key = [(a["rule"]["id"], a["event"]["start"]) for a in native["alerts"]]
    assert key == [(a["rule"]["id"], a["event"]["start"]) for a in alone["alerts"]]
    assert native["sources"] == alone["sources"] and native["events"] == alone["events"]
    hits = collections.Counter()
    for a in native["alerts"]:
        hits[a["rule"]["id"][-1]] += len(a["govsoc"]["alert"].get("event_ids") or ())
    # per copy: whoami (2: case, windash), powershell (1), dotted greek (1: "iσ"; "İΣ "
    # folds to "iς", a final sigma), cased (1), wildcard (1); the own pack adds its own
    assert {k: hits[k] for k in "12345"} == {"1": 60, "2": 30, "3": 30, "4": 30, "5": 30}
    counts = made[0].counts()
    assert counts["whole"] < 300 and counts["unmatched"] > 0 and counts["candidates"] > 0
    assert made[0].native_rules > 0


def test_a_later_copy_of_a_matched_record_no_rule_matches(tmp_path, monkeypatch):
    """A record read after a matched one with the same id (computer, channel, record id)
    is a duplicate, and its file is counted as holding that alert's event, whether the
    copy reaches the hunt alone or among records no rule can match."""
    monkeypatch.setenv("GOVSOC_CACHE_DIR", str(tmp_path / "cache"))
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    paths = _evidence(tmp_path)
    t0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    late = write_evtx(tmp_path / "late.evtx", [
        {"channel": SYSMON, "provider": "Microsoft-Windows-Sysmon", "event_id": 1,
         "record_id": rid, "time": t0 + timedelta(seconds=rid), "computer": "ws1.gov.local",
         "data": {"Image": "C:\\x\\t.exe", "CommandLine": "echo benign"}}
        for rid in (2, 3, 1, 4, 5, 9999)])  # 1: whoami /all, matched in the first file
    native = _hunt([*paths, late], rules, native=True)
    alone = _hunt([*paths, late], rules, native=False)
    assert native["events"] == alone["events"] == len(paths) * len(LINES) + 1
    assert native["sources"] == alone["sources"]
    assert "11111111-0000-4000-8000-000000000001" in native["sources"][str(late)]


def _ids(docs: list) -> list[str]:
    """The ids of what a reader handed over, in order (records no rule can match come
    together, as `UnmatchedRecords`)."""
    return [i for d in docs for i in (d.ids if isinstance(d, UnmatchedRecords) else [d.id])]


def test_damage_in_a_file_read_through_the_filter(tmp_path):
    """A damaged record: counted with its reason, the others read, as without the filter."""
    bad = tmp_path / "damaged.evtx"
    bad.write_bytes(with_resealed_damage(SECURITY.read_bytes(), 7650, 7700))
    _pack, compiled, _ = hunt_rules([str(OWN_PACK)], "sqlite", cache=False)
    pre = prefilter.EvtxPrefilter(Evaluator(compiled))
    docs: list = []
    stats = read_evtx(str(bad), docs.append, lazy=True, prefilter=pre)
    plain: list = []
    want = read_evtx(str(bad), plain.append, lazy=True)
    assert len(_ids(docs)) == len(plain) == 6 and stats.bad_total == want.bad_total == 1
    assert "damaged record skipped" in next(iter(stats.bad_reasons))
    assert _ids(docs) == [d.id for d in plain]
    cut = tmp_path / "cut.evtx"
    cut.write_bytes(SECURITY.read_bytes()[:9000])
    stats = read_evtx(str(cut), docs.append, lazy=True, prefilter=pre)
    assert "file truncated: 0 of 1 chunks complete" in next(iter(stats.bad_reasons))


HEAD, CHUNK = 4096, 65536
PROVIDER = "Security-Auditing".encode("utf-16-le")


def _chunks(n: int) -> bytearray:
    """The sample's file header and its one chunk (7 records), `n` times."""
    return with_chunk_repeated(SECURITY.read_bytes(), n)


def _flip_record(data: bytearray, chunk: int) -> bytearray:
    data[data.index(PROVIDER, HEAD + chunk * CHUNK)] ^= 0x01
    return data


def _flip_header(data: bytearray, chunk: int) -> bytearray:
    data[HEAD + chunk * CHUNK + 10] ^= 0xFF
    return data


def _blank(data: bytearray, chunk: int, fill: bytes) -> bytearray:
    data[HEAD + chunk * CHUNK:HEAD + (chunk + 1) * CHUNK] = fill * CHUNK
    return data


def _large_dirty() -> bytearray:
    """A chunk, 1,100 empty ones (a dirty file's), a damaged chunk, an intact one."""
    data = _flip_record(_chunks(3), 1)
    return data[:HEAD + CHUNK] + bytes(1100 * CHUNK) + data[HEAD + CHUNK:]


HOSTILE = {
    "intact": lambda: _chunks(3),
    "a damaged record": lambda: with_resealed_damage(SECURITY.read_bytes(), 7650, 7700),
    "records checksum": lambda: _flip_record(_chunks(3), 1),
    "header checksum": lambda: _flip_header(_chunks(3), 0),
    "every chunk damaged": lambda: _flip_header(_flip_record(_chunks(2), 0), 1),
    "damage, then an empty chunk, then garbage": lambda: _blank(_blank(
        _flip_record(_chunks(4), 0), 1, b"\x00"), 2, b"\x5a"),
    # past the size read into memory whole (64 MiB): read chunk by chunk
    "a large dirty file": lambda: _large_dirty(),
    "cut in its last chunk": lambda: _flip_record(_chunks(3), 0)[:HEAD + 2 * CHUNK + 900],
    "cut in its header": lambda: _chunks(1)[:300],
    "no chunk": lambda: _chunks(1)[:HEAD],
    "bad signature": lambda: b"ElfFilx\x00" + _chunks(1)[8:],
    "empty": lambda: b"",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_read_through_the_filter_as_without_it(tmp_path, case):
    """Damaged chunks (either checksum), a dirty file's empty and garbage chunks, cut
    files, no EVTX at all: the same records, damage counts, reasons and examples, or the
    same error, read through the filter as by the Python reader."""
    from collectors.logs.evtx import EvtxError

    path = tmp_path / "x.evtx"
    path.write_bytes(bytes(HOSTILE[case]()))
    _pack, compiled, _ = hunt_rules([str(OWN_PACK)], "sqlite", cache=False)

    def read(pre):
        docs: list = []
        try:
            stats = read_evtx(str(path), docs.append, lazy=True, prefilter=pre)
        except EvtxError as exc:
            return str(exc)
        return (_ids(docs), dict(stats.bad_reasons), stats.examples,
                stats.lines)

    native = read(prefilter.EvtxPrefilter(Evaluator(compiled)))
    assert native == read(None)
    if case == "records checksum":
        assert len(native[0]) == 14 and sum(native[1].values()) == 7
    if case == "bad signature":
        assert native.endswith("not an EVTX file (bad signature)")


def test_a_missing_file_through_the_filter(tmp_path):
    from collectors.logs.evtx import EvtxError

    _pack, compiled, _ = hunt_rules([str(OWN_PACK)], "sqlite", cache=False)
    pre = prefilter.EvtxPrefilter(Evaluator(compiled))
    with pytest.raises(EvtxError) as native:
        read_evtx(str(tmp_path / "gone.evtx"), list().append, lazy=True, prefilter=pre)
    with pytest.raises(EvtxError) as alone:
        read_evtx(str(tmp_path / "gone.evtx"), list().append, lazy=True)
    assert str(native.value) == str(alone.value) and "No such file" in str(native.value)


def test_the_native_fold_is_fold_case_where_it_answers():
    """The filter folds Latin text itself (below U+0250: "Microsoft® Windows®" is in most
    Sysmon process records) exactly as `fold_case`, and leaves any other text to it."""
    from detections._native import fold_text

    from soc_core.textcase import fold_case

    latin = "".join(map(chr, range(0x250)))
    assert fold_text(latin) == fold_case(latin)
    assert all(fold_text(chr(c)) == fold_case(chr(c)) for c in range(0x250))
    assert fold_text("C:\\PROGRAM FILES\\Microsoft® İNTUNE ǄǅÀ") == \
        fold_case("C:\\PROGRAM FILES\\Microsoft® İNTUNE ǄǅÀ")
    for other in ("ΑΣ", "Ɐ", "АБВ", "日本", "\U0001F600"):
        assert fold_text("x" + other) is None


def test_planned_records_build_the_events_the_python_reader_builds(tmp_path, monkeypatch):
    """A record the filter hands over with its rules builds its event from its System
    block and the fields the filter read: on every real sample, the event the Python
    reader makes of the same record."""
    from collectors.logs import evtx

    monkeypatch.setenv("GOVSOC_CACHE_DIR", str(tmp_path / "cache"))
    rules = tmp_path / "every.yml"
    rules.write_text("title: every event\nid: 11111111-0000-4000-8000-0000000000ff\n"
                     "logsource: {product: windows}\ndetection:\n  sel: {Channel|exists: true}\n"
                     "  condition: sel\nlevel: low\n", encoding="utf-8")
    built: dict = {}
    build = evtx._PlannedRecord.build

    def spy(self):
        built[self.id] = event = build(self)
        return event

    monkeypatch.setattr(evtx._PlannedRecord, "build", spy)
    _hunt([SAMPLES], rules, native=True)
    assert len(built) > 6000
    want: dict = {}
    for path in sorted(SAMPLES.rglob("*.evtx")):
        read_evtx(str(path), lambda ev: want.setdefault(ev["event"]["id"], ev))
    assert all(event == want[eid] for eid, event in built.items())


def test_a_planned_record_builds_alike_from_its_json():
    """The other source of a planned record's event (a System block holding a number no
    64-bit integer can be: the record's JSON instead) builds the same event."""
    from collectors.logs.evtx import _PlannedRecord
    from detections import _native

    for rec in PyEvtxParser(str(SECURITY)).records_json():
        found = _native.plain_fields(rec["data"], _DATASETS)
        assert found is not None
        stored, values, made = found
        parsed = orjson.loads(rec["data"])
        data = {k: v for k, v in parsed["Event"]["EventData"].items() if v is not None}
        fields = (tuple(values[:5]), {k: str(v) for k, v in data.items()}, None)
        args = ((), ()), made, None, stored, fields
        by_block = _PlannedRecord(parsed["Event"]["System"], *args).build()
        assert _PlannedRecord(rec["data"], *args).build() == by_block
        assert by_block == EvtxRecord(parsed).event()
