"""The packet ring from a real capture (`govsoc collect pcap --ring`), retrieval compared with
tshark, and what happens when the ring is damaged or has rotated: notes, partial results,
never a crash. Also the ring's configuration checks and its retention rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ring_helpers import pcap_packets, tshark_select

from collectors.packet import PacketRing, PcapError, RingConfig, ring_config, write_flow_pcap
from collectors.packet import ringfile as rf
from soc_core.config import Config, ConfigError
from soc_core.store import Selection, open_store

CAPTURE = "corelight-caldera-detector/sandcat.pcap"  # 639 packets, 12 flows, HTTP C2


@pytest.fixture(scope="module")
def ringed(tmp_path_factory, shared_dir):
    """`govsoc collect pcap --ring` of a real capture into 1 MiB ring files."""
    tmp = tmp_path_factory.mktemp("ringpcap")
    (tmp / "govsoc.toml").write_text(textwrap.dedent(f"""
        store_url = "sqlite:///{tmp}/govsoc.db"
        data_dir = "{tmp}/data"
        [collectors.ring]
        file_mb = 1
        max_mb = 64
        min_free_mb = 0
    """))
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOVSOC_STORE_URL", "GOVSOC_DATA_DIR")}
    env["GOVSOC_CONFIG"] = str(tmp / "govsoc.toml")
    govsoc = str(Path(sys.executable).with_name("govsoc"))
    original = shared_dir / "pcaps" / CAPTURE
    run = subprocess.run([govsoc, "collect", "pcap", "--ring", str(original)], env=env,
                         cwd=tmp, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "packet ring" in run.stdout and "639 packets written" in run.stdout, run.stdout
    with open_store(f"sqlite:///{tmp}/govsoc.db") as store:
        events = list(store.scan(Selection()))
    return {"tmp": tmp, "env": env, "events": events, "original": original,
            "ring_dir": tmp / "data" / "pcap", "govsoc": govsoc,
            "cfg": Config(values={"data_dir": str(tmp / "data")})}


def test_collect_pcap_ring_then_get_equals_tshark(ringed, tmp_path):
    flows = [e for e in ringed["events"] if e["event"]["dataset"] == "network.flow"]
    assert len(flows) == 12 and len(list(ringed["ring_dir"].glob("*.pcapng"))) == 4
    # tshark for one flow of each transport and the flows over several files (lean)
    chosen = {f["network"]["transport"]: f for f in flows}
    chosen.update({f["event"]["id"]: f for f in flows if _files_spanned(f)})
    assert len(chosen) >= 4
    with open_store(f"sqlite:///{ringed['tmp']}/govsoc.db") as store:
        for f in chosen.values():
            result = write_flow_pcap(store, ringed["cfg"], tmp_path / "got.pcap",
                                     flows=[f["event"]["id"]])
            expected = tshark_select(ringed["original"], f, tmp_path / "ref.pcap")
            assert result.notes == [] and result.packets == len(expected) > 0
            assert pcap_packets(tmp_path / "got.pcap") == expected  # frames and times
    # the CLI: an HTTP event's flow, and a bad id (exit 2, one line, no file left)
    http = next(e for e in ringed["events"] if e["event"]["dataset"] == "network.http")
    out = tmp_path / "cli.pcap"
    run = subprocess.run([ringed["govsoc"], "pcap", "get", "--flow", http["event"]["id"],
                          "-o", str(out)], env=ringed["env"], cwd=ringed["tmp"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "packets of 1 flow(s)" in run.stdout, run.stderr
    assert len(pcap_packets(out)) > 100
    bad = subprocess.run([ringed["govsoc"], "pcap", "get", "--flow", "nope", "-o",
                          str(tmp_path / "none.pcap")], env=ringed["env"], cwd=ringed["tmp"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "event nope: not found" in bad.stderr and not (tmp_path / "none.pcap").exists()


def _files_spanned(flow: dict) -> int:
    loc = flow["govsoc"]["pcap"]
    return rf.parse_name(loc["last"]["file"])[1] - rf.parse_name(loc["first"]["file"])[1]


def test_rotated_and_damaged_ring_give_notes_not_crashes(ringed, store, tmp_path):
    ring = tmp_path / "pcap"
    shutil.copytree(ringed["ring_dir"], ring)
    cfg = RingConfig(dir=ring, file_bytes=1 << 20, max_bytes=64 << 20, max_age_s=3600,
                     min_free_bytes=0)
    store.write(ringed["events"], refresh=True)
    flows = [e for e in ringed["events"] if e["event"]["dataset"] == "network.flow"]
    big = max(flows, key=_files_spanned)
    first, last = big["govsoc"]["pcap"]["first"]["file"], big["govsoc"]["pcap"]["last"]["file"]
    assert first != last
    whole = write_flow_pcap(store, cfg, tmp_path / "whole.pcap", flows=[big["event"]["id"]])
    # the first file rotated out: the rest is delivered, the gap is named
    (ring / first).unlink()
    r = write_flow_pcap(store, cfg, tmp_path / "a.pcap", flows=[big["event"]["id"]])
    assert 0 < r.packets < whole.packets
    assert any(f"{first} has rotated out" in n for n in r.notes), r.notes
    # the last file torn in the middle of a block (a crash, a full disk)
    size = (ring / last).stat().st_size
    with open(ring / last, "r+b") as fh:
        fh.truncate(size // 2 + 3)
    r2 = write_flow_pcap(store, cfg, tmp_path / "b.pcap", flows=[big["event"]["id"]])
    assert 0 < r2.packets < r.packets and any("damaged at byte" in n for n in r2.notes)
    # a file whose header is garbage, and one whose blocks are garbage
    middle = rf.file_name(rf.parse_name(first)[0], rf.parse_name(first)[1] + 1)
    data = bytearray((ring / middle).read_bytes())
    data[rf.HEADER_LEN + 4:rf.HEADER_LEN + 8] = b"\xff\xff\xff\x7f"  # absurd block length
    (ring / middle).write_bytes(bytes(data))
    r3 = write_flow_pcap(store, cfg, tmp_path / "c.pcap", flows=[big["event"]["id"]])
    assert any(f"{middle} is damaged" in n for n in r3.notes) and r3.packets < r2.packets
    (ring / middle).write_bytes(b"\0" * 100)
    r4 = write_flow_pcap(store, cfg, tmp_path / "d.pcap", flows=[big["event"]["id"]])
    assert any("not a packet ring file" in n for n in r4.notes)
    assert len(pcap_packets(tmp_path / "d.pcap")) == r4.packets
    # an alert: the flows of its matched events; a query over a span
    http = [e["event"]["id"] for e in ringed["events"]
            if e["event"]["dataset"] == "network.http"][:3]
    store.write([{"@timestamp": "2024-12-18T18:00:00.000Z",
                  "event": {"kind": "alert", "id": "al-ring", "dataset": "govsoc.alert"},
                  "govsoc": {"alert": {"event_ids": http, "status": "open"}}}], refresh=True)
    ra = write_flow_pcap(store, cfg, tmp_path / "e.pcap", alert="al-ring")
    assert ra.flows >= 1 and ra.packets > 0
    rq = write_flow_pcap(store, cfg, tmp_path / "f.pcap", query="destination.port:8888",
                         start="2000-01-01T00:00:00Z", end="now")
    assert rq.flows == 2 and set(rq.flow_ids) >= set(ra.flow_ids)
    with pytest.raises(PcapError, match="no such alert"):
        write_flow_pcap(store, cfg, tmp_path / "g.pcap", alert="al-none")
    with pytest.raises(PcapError, match="exactly one"):
        write_flow_pcap(store, cfg, tmp_path / "g.pcap")


def test_ring_config_checks(tmp_path):
    def cfg(**ring):
        return Config(values={"data_dir": str(tmp_path), "collectors": {"ring": ring},
                              "departments": [{"id": "wjw", "cidrs": ["10.1.0.0/16"]}]})

    good = ring_config(cfg(file_mb=2, max_mb=10, max_age="3d", bpf="not port 873",
                           retention={"wjw": "30d"}))
    assert good.dir == tmp_path / "pcap" and good.file_bytes == 2 << 20
    assert good.age_for("wjw") == 30 * 86400 and good.age_for("all") == 3 * 86400
    for bad, words in [({"file_mb": 0}, "collectors.ring.file_mb"),
                       ({"file_mb": 8, "max_mb": 10}, "at least twice"),
                       ({"max_age": "soon"}, "collectors.ring.max_age"),
                       ({"bpf": "port and and"}, "bad filter"),
                       ({"retention": {"gaj": "3d"}}, "'gaj' is not a configured"),
                       ({"colour": "red"}, "unknown key 'colour'")]:
        with pytest.raises(ConfigError, match=words) as info:
            ring_config(cfg(**bad))
        assert "\n" not in str(info.value)


def test_retention_per_department_and_oldest_first(tmp_path):
    cfg = RingConfig(dir=tmp_path, file_bytes=1 << 20, max_bytes=3 << 20,
                     max_age_s=7 * 86400, min_free_bytes=0, retention={"wjw": 86400.0})
    now = time.time()

    def make(stream: str, seq: int, age_s: float, size: int = 1 << 20) -> Path:
        p = tmp_path / rf.file_name(stream, seq)
        p.write_bytes(rf.header(1) + bytes(size - rf.HEADER_LEN))
        os.utime(p, (now - age_s, now - age_s))
        return p

    wjw_old = make("ring-20260101T000000Z-1-w0-wjw", 1, 2 * 86400, 1000)
    all_two_days = make("ring-20260101T000000Z-1-w0-all", 1, 2 * 86400)
    a2 = make("ring-20260101T000000Z-1-w0-all", 2, 3600)
    a3 = make("ring-20260101T000000Z-1-w0-all", 3, 60)
    ring = PacketRing(cfg)
    ring.enforce(now)
    assert not wjw_old.exists()  # past its department's day
    assert all_two_days.exists() and a2.exists() and a3.exists()  # within 7 days, 3 MiB
    ring.enforce(now, extra=1 << 20)  # room for the next file: the oldest goes
    assert not all_two_days.exists() and a2.exists() and a3.exists()
    assert ring.paused is None and ring.removed_files == 2


class _Flow:  # the two attributes of a flow-table entry the ring uses
    __slots__ = ("key", "ring")

    def __init__(self) -> None:
        self.key, self.ring = None, None


def _ring_blocks(ring_dir: Path) -> list[tuple[str, int, int, int, bytes]]:
    """(file, packet number, offset, ts in µs, frame) of every block, files in order."""
    out = []
    for p in sorted(ring_dir.glob("*.pcapng")):
        buf = p.read_bytes()
        assert rf.read_header(p) == 1
        out += [(p.name, n, off, us, buf[a:b])
                for n, off, us, a, b in rf.packets(buf, rf.HEADER_LEN, None, 1)]
    return out


def test_ring_writer_keeps_every_frame_in_order(tmp_path, monkeypatch):
    """Frames of many lengths (past the packers kept per length, and past the write
    buffer) through rotation: every frame back in order with its time, and each flow's
    first and last file/packet/offset pointing at its own frames."""
    from collectors.packet import ring as ring_mod

    monkeypatch.setattr(ring_mod, "_PACKERS", {})
    monkeypatch.setattr(ring_mod, "_PACKERS_MAX", 40)  # the rest: the three-step path
    cfg = RingConfig(dir=tmp_path, file_bytes=1 << 20, max_bytes=64 << 20, max_age_s=3600,
                     min_free_bytes=0)
    ring = PacketRing(cfg)
    flows = [_Flow() for _ in range(7)]
    sent = []
    for i in range(3000):
        n = 14 + (i * 37) % 1500 if i % 500 else ring_mod.BUFFER + i  # some past the buffer
        frame = bytes([i & 0xFF]) * n
        us = 1_700_000_000_000_000 + i * 1000 + (1 << 32) * (i // 1000)  # high word moves
        flow = flows[i % 7] if i % 11 else None
        ring.write(us, frame, flow)
        sent.append((us, frame, flow))
    ring.close()
    blocks = _ring_blocks(tmp_path)
    assert [(us, d) for _, _, _, us, d in blocks] == [(us, d) for us, d, _ in sent]
    assert len({name for name, *_ in blocks}) >= 3  # rotated
    assert all(p.stat().st_size <= cfg.file_bytes + ring_mod.BUFFER + 3000
               for p in tmp_path.iterdir())
    assert ring.written == 3000 and ring.bytes == sum(p.stat().st_size
                                                      for p in tmp_path.iterdir())
    for k, flow in enumerate(flows):
        mine = [b for b, (_, _, f) in zip(blocks, sent, strict=True) if f is flow]
        loc = rf.flow_fields(flow.ring)
        assert loc["packets"] == len(mine), k
        for end, b in (("first", mine[0]), ("last", mine[-1])):
            assert (loc[end]["file"], loc[end]["packet"], loc[end]["offset"]) == b[:3], k


@pytest.mark.live  # (mounts a tmpfs: root)
def test_ring_write_on_a_full_disk_keeps_whole_blocks(tmp_path):
    """A disk that fills under the ring (no free-space margin configured): the write that
    fails cuts the file back to its last whole block, writing stops with the reason, and
    what the file holds reads back whole, as many packets as the ring says it wrote."""
    disk = tmp_path / "tiny"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        ring = PacketRing(RingConfig(dir=disk, file_bytes=1 << 20, max_bytes=64 << 20,
                                     max_age_s=3600, min_free_bytes=0))
        for i in range(3000):
            ring.write(1_700_000_000_000_000 + i, bytes([i & 0xFF]) * 999, _Flow())
        ring.close()
        blocks = _ring_blocks(disk)  # (raises on a torn block)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert ring.paused and "the disk is full" in ring.paused, ring.paused
    assert 0 < len(blocks) == ring.written and ring.not_written == 3000 - ring.written
    assert [d for *_, d in blocks] == [bytes([i & 0xFF]) * 999 for i in range(len(blocks))]
