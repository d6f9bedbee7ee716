"""Fuzz targets: every parser that takes outside input, as one function of bytes each.

The invariant for all of them: no exception escapes except the project's own clear errors
(listed per target), no hang beyond a bound, memory bounded. `run_fuzz.py` drives them
with atheris (coverage-guided; `make fuzz`), `test_fuzz_smoke.py` replays their seeds,
the kept regression inputs and a few hundred deterministic mutations (`make test`).

A target's seeds are real inputs: the shared test data (by path) and small files written
here. Each target works in one private temporary folder, reused between inputs.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
MASTER = b"fuzzing master secret 0123456789"
_WORK = Path(tempfile.mkdtemp(prefix="govsoc-fuzz-"))


@dataclass
class Target:
    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]  # the project's clear errors for bad input
    seeds: Callable[[], list[bytes]]
    covers: str  # what it exercises, for the README and `run_fuzz.py --list`
    modules: list[str] = field(default_factory=list)  # instrumented for coverage

    def regression_inputs(self) -> list[tuple[str, bytes]]:
        folder = REGRESSIONS / self.name
        if not folder.is_dir():
            return []
        return [(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]

    def check(self, data: bytes) -> None:
        """One input; raises only if the invariant breaks."""
        try:
            self.run(data)
        except self.allowed:
            pass


def _file(name: str, data: bytes) -> str:
    path = _WORK / name
    path.write_bytes(data)
    return str(path)


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


# -- pcap / pcapng ------------------------------------------------------------------------
def _pcap(data: bytes) -> None:
    from collectors.packet import read_pcaps

    events, stats = read_pcaps([_file("x.cap", data)])
    for ev in events:
        _valid_event(ev)
    stats.summary()


def _pcap_seeds() -> list[bytes]:
    seeds = []
    for p in sorted((SHARED / "pcaps").rglob("*")):
        if p.suffix in (".pcap", ".pcapng") and len(seeds) < 6:
            seeds.append(_head(p, 16_384))  # a cut file is a good seed too
    pcapng = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(
        "<I", 28)
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 65535) + struct.pack("<I", 20)
    frame = bytes(12) + b"\x08\x00" + bytes.fromhex(
        "4500001c0001000040110000c0000201c000020204d20035000800000000")
    epb_body = struct.pack("<IIIII", 0, 0, 1, len(frame), len(frame)) + frame
    epb_body += b"\x00" * (-len(epb_body) % 4)
    epb = struct.pack("<II", 6, 12 + len(epb_body)) + epb_body + struct.pack(
        "<I", 12 + len(epb_body))
    return seeds + [pcapng + idb + epb]


# -- protocol parsers ---------------------------------------------------------------------
def _proto(data: bytes) -> None:
    from collectors.packet.decode import decode
    from collectors.packet.proto import dns, http, ssh, tls

    app = (ValueError, IndexError, struct.error, UnicodeError)  # what the fast path counts
    for parse in (dns.parse, http.parse_request, http.parse_response,
                  tls.parse_client_hello, tls.parse_server_hello, ssh.banner):
        try:
            parse(data)
        except app:
            pass
    tls.record_length(data)
    for linktype in (1, 101, 113, 276, 0, 228):
        decode(data, 0, len(data), linktype)


def _proto_seeds() -> list[bytes]:
    dns_query = bytes.fromhex("1234010000010000000000000377777706676f76736f6303636e0000010001")
    hello = bytes.fromhex("16030100310100002d0303") + bytes(32) + bytes.fromhex(
        "000002130101000002ff01")
    return [dns_query, b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"SSH-2.0-OpenSSH_9.2\r\n",
            hello, bytes(14) + bytes.fromhex("45000014000100004006000001020304050607")]


# -- EVTX ---------------------------------------------------------------------------------
def _evtx(data: bytes) -> None:
    from collectors.logs import read_evtx

    read_evtx(_file("x.evtx", data), _valid_event)


def _evtx_seeds() -> list[bytes]:
    sample = ROOT / "tests" / "collectors" / "data" / "Security_short_selected.evtx"
    seeds = [sample.read_bytes()]
    for p in sorted((SHARED / "evtx").rglob("*.evtx"))[:2]:
        seeds.append(_head(p, 4096 + 65536))
    return seeds


def _evtx_map(data: bytes) -> None:
    from collectors.logs.evtx import map_record

    try:
        rec = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if isinstance(rec, dict):
        _valid_event(map_record(rec))


def _evtx_map_seeds() -> list[bytes]:
    return [orjson.dumps({"Event": {
        "System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}},
                   "EventID": 4625, "EventRecordID": 7, "Channel": "Security",
                   "Computer": "pc01", "TimeCreated": {"#attributes": {
                       "SystemTime": "2026-01-01T00:00:00.000000Z"}}},
        "EventData": {"TargetUserName": "admin", "IpAddress": "192.0.2.7", "IpPort": "4444",
                      "LogonType": "3", "Status": "0xc000006d"}}}),
        orjson.dumps({"Event": {"System": {"EventID": {"#text": 1}, "Channel":
                                           "Microsoft-Windows-Sysmon/Operational"},
                                "EventData": {"Hashes": "SHA256=ab,MD5=cd",
                                              "Image": "C:\\a.exe"}}})]


# -- log lines ----------------------------------------------------------------------------
def _lines(fmt: str) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        from collectors.logs import LogStats, Source, parser_for

        parser, stats = parser_for(fmt), LogStats()
        offset = 0
        for n, raw in enumerate(data.split(b"\n"), 1):
            text = raw.decode("utf-8", "replace").rstrip("\r")
            for doc in parser.feed(text, Source("fuzz", "fuzz.log", offset, n), stats):
                _valid_event(doc)
            offset += len(raw) + 1
        for doc in parser.flush(stats):
            _valid_event(doc)

    return run


_LOG_SEEDS = {
    "auth": [b"Nov 23 10:00:01 h sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2",
             b"2026-11-23T10:00:01.123456+08:00 h sshd[9]: Accepted publickey for bob from "
             b"2001:db8::1 port 50000 ssh2: ED25519 SHA256:abc",
             b"Nov 23 10:00:02 h sudo:   alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
             b"-- Logs begin at Mon 2026-11-23 10:00:00 CST. --"],
    "syslog": [b"<13>Nov 23 10:00:01 h app[2]: hello",
               b"<165>1 2026-11-23T10:00:01.5Z h app 12 ID47 [ex@1 a=\"b\"] msg",
               b"Nov 23 10:00:01.123456 h kernel: [1.0] x", b"2026-11-23T10:00:01+08:00 h a: b",
               b'{"__REALTIME_TIMESTAMP": "1763863201000000", "_HOSTNAME": "h", "PRIORITY": '
               b'"6", "SYSLOG_FACILITY": "3", "SYSLOG_IDENTIFIER": "app", "_PID": "7", '
               b'"MESSAGE": [104, 105]}'],
    "auditd": [b"type=SYSCALL msg=audit(1700000000.1:9): arch=c000003e syscall=59 success=yes "
               b"exit=0 pid=1 uid=0 comm=\"sh\" exe=\"/bin/sh\"\ntype=EXECVE msg=audit("
               b"1700000000.1:9): argc=2 a0=\"sh\" a1=\"-c\"\ntype=EOE msg=audit(1700000000.1:9):",
               b"type=USER_AUTH msg=audit(1700000000.1:9): pid=1 uid=0 msg='acct=\"x\" "
               b"res=failed'"],
}


# -- the analyst query language -----------------------------------------------------------
_query_store = None


def _query(data: bytes) -> None:
    from soc_core import query
    from soc_core.store import Selection, open_store

    global _query_store
    text = data.decode("utf-8", "replace")
    query.parse(text)
    if _query_store is None:
        _query_store = open_store(f"sqlite:///{_WORK}/query.db")
        _query_store.write([{"@timestamp": "2026-01-01T00:00:00Z", "message": "Failed password",
                             "event": {"dataset": "system.auth"}, "source": {"ip": "10.0.0.1"},
                             "user": {"name": "root"}}], refresh=True)
    _query_store.search(Selection(query=text), size=5)


def _query_seeds() -> list[bytes]:
    return [b"source.ip:10.0.0.5 AND NOT destination.port:22",
            b"event.dataset:(network.dns OR network.http) dns.question.name:*.example.cn",
            b"destination.port:[1 TO 1024] user.name:\"\xe5\xbc\xa0 \xe4\xb8\x89\"",
            "失败 message:\"Failed password\"".encode(), b"source.bytes >= 100 -user.name:root",
            b"_exists_:x OR host.name:web-0?"]


# -- NDJSON ingest ------------------------------------------------------------------------
_ingest_store = None


def _ingest(data: bytes) -> None:
    from soc_core import ecs
    from soc_core.store import open_store

    global _ingest_store
    docs = []
    for line in data.split(b"\n"):
        try:
            docs.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # `govsoc ingest` reports it as "not JSON"
    for doc in docs:
        try:
            ecs.prepare(doc)
        except ecs.EventError:
            pass
    if _ingest_store is None:
        _ingest_store = open_store(f"sqlite:///{_WORK}/ingest.db")
    result = _ingest_store.write(docs)  # a bad document is a rejection, never an exception
    assert result.written + result.duplicates + len(result.rejected) == len(docs)


def _ingest_seeds() -> list[bytes]:
    return [b'{"@timestamp": "2026-01-01T00:00:00Z", "event.dataset": "system.auth", '
            b'"source.ip": "10.0.0.1", "source.port": 22, "message": "x"}\n'
            b'{"@timestamp": 1767225600.5, "event": {"dataset": "a.b", "kind": "alert"}}',
            b'{"@timestamp": 1e20}\n[1, 2]\n{"@timestamp": "2026-01-01", "event": {"id": ""}}',
            b'{"@timestamp": "2026-01-01T00:00:00+08:00", "host": {"ip": ["::1", "x"]}}']


# -- Sigma rule loading -------------------------------------------------------------------
def _sigma(data: bytes) -> None:
    from detections.rules import load_pack

    pack = load_pack([_file("rule.yml", data)])
    for rule in pack.rules:
        rule.threat()


def _sigma_seeds() -> list[bytes]:
    seeds = [p.read_bytes() for p in sorted((ROOT / "detections" / "rules").rglob("*.yml"))[:4]]
    return seeds + [b"title: t\nid: 0d0d0d0d-0000-4000-8000-000000000001\nlogsource: {product: "
                    b"linux, service: auth}\ndetection:\n  s: {user.name|re: '(a+)+c'}\n"
                    b"  k: ['Failed password']\n  condition: s and not k\n",
                    b"- a\n- b\n", b"title: [unclosed\n"]


# -- the keystore -------------------------------------------------------------------------
def _keystore(data: bytes) -> None:
    from crypto_svc.keystore import Keystore

    ks = Keystore(_file("keystore.json", data), MASTER, iterations=1000)
    ks.unlock()
    for info in ks.list():
        ks.public_key(info.id)
        if info.state == "active":
            ks.private_key(info.id)


def _keystore_seeds() -> list[bytes]:
    from crypto_svc.keystore import Keystore

    path = _WORK / "seed-keystore.json"
    if not path.exists():
        ks = Keystore(path, MASTER, iterations=1000)
        key = ks.create("sign", {"department": "finance"})
        ks.rotate(key.id)
        ks.destroy(ks.create("encrypt").id)
    good = path.read_bytes()
    doc = json.loads(good)
    doc["kdf"]["iterations"] = 2_000_000_000
    return [good, json.dumps(doc).encode(), b'{"format": "govsoc-keystore/1", "keys": {}}']


def _valid_event(doc: dict) -> None:
    """What a parser emits must be a storable event."""
    from soc_core import ecs

    ecs.normalize(doc)


def _errors() -> dict[str, tuple[type[BaseException], ...]]:
    from collectors.logs.evtx import EvtxError
    from collectors.packet.stats import CaptureError
    from crypto_svc.errors import CryptoError
    from detections.rules import RuleError
    from soc_core.query import QueryError
    from soc_core.store import StoreError

    return {"pcap": (CaptureError,), "evtx": (EvtxError,), "keystore": (CryptoError,),
            "sigma": (RuleError,), "query": (QueryError, StoreError), "none": ()}


def targets() -> dict[str, Target]:
    err = _errors()
    out = [
        Target("pcap", _pcap, err["pcap"], _pcap_seeds,
               "pcap/pcapng reader, frame decoder, flows and app-protocol events",
               ["collectors.packet"]),
        Target("packet_proto", _proto, err["none"], _proto_seeds,
               "link/IP/L4 decoder and the DNS, HTTP, TLS and SSH parsers on raw bytes",
               ["collectors.packet"]),
        Target("evtx", _evtx, err["evtx"], _evtx_seeds,
               "EVTX file reader (chunk CRC checks, damaged records) and the ECS mapping",
               ["collectors.logs"]),
        Target("evtx_map", _evtx_map, (KeyError, ValueError, TypeError, AttributeError),
               _evtx_map_seeds,
               "EVTX record -> ECS mapping on any JSON (errors the importer counts)",
               ["collectors.logs"]),
        *(Target(f"log_{fmt}", _lines(fmt), err["none"], lambda fmt=fmt: _LOG_SEEDS[fmt],
                 f"{fmt} line parser (also journalctl text exports); events must be valid",
                 ["collectors.logs"]) for fmt in ("auth", "syslog", "auditd")),
        Target("query", _query, err["query"], _query_seeds,
               "analyst query parser and its SQLite compilation, run on a real store",
               ["soc_core.query", "soc_core.store"]),
        Target("ingest", _ingest, err["none"], _ingest_seeds,
               "NDJSON ingest: ECS validation and a real SQLite write (rejections only)",
               ["soc_core.ecs", "soc_core.store"]),
        Target("sigma", _sigma, err["sigma"], _sigma_seeds,
               "Sigma rule file loading (YAML, pySigma, RE2 check) and both conversions",
               ["detections"]),
        Target("keystore", _keystore, err["keystore"], _keystore_seeds,
               "keystore file loader: shape checks, KDF bounds, unsealing",
               ["crypto_svc"]),
    ]
    return {t.name: t for t in out}


if os.environ.get("GOVSOC_FUZZ_KEEP_WORK") is None:
    import atexit
    import shutil

    atexit.register(shutil.rmtree, _WORK, ignore_errors=True)
