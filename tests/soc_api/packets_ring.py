"""Helpers of the packets tests: a packet ring in a test folder, real captures replayed
into it (and their events into the store) the way `govsoc collect pcap --ring` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collectors.packet import PacketRing, read_pcaps, ring_config

PCAPS = Path(__file__).resolve().parents[3] / "shared" / "pcaps"
HTTP_PCAP = PCAPS / "zeek" / "http_bro.org.pcap"  # 10.0.2.15 -> bro.org, HTTP
FTP_PCAP = PCAPS / "zeek" / "ftp_ipv4.pcap"  # 141.142.220.235 -> ftp.NetBSD.org, a RETR


def ring_settings(tmp: Path) -> dict[str, Any]:
    """make_config's extra keys for a ring under `tmp` (old captures: no age budget)."""
    return {"collectors.ring": {"enabled": True, "dir": str(tmp / "ring"), "file_mb": 1,
                                "max_mb": 64, "max_age": "36500d", "min_free_mb": 1},
            # tshark's time limit in the API: generous, a loaded test machine is not a slow capture
            "packets": {"timeout_s": 300}}


def replay(cfg: Any, store: Any, *pcaps: Path) -> list[dict[str, Any]]:
    """The captures' events (fast engine) with their packets in the ring; stored."""
    ring = PacketRing(ring_config(cfg), source="pcap")
    events, _stats = read_pcaps([str(p) for p in pcaps], ring=ring)
    docs = list(events)
    result = store.write(docs, refresh=True)
    assert not result.rejected, result.rejected[:1]
    return docs


def first(docs: list[dict[str, Any]], dataset: str, **fields: Any) -> dict[str, Any]:
    """The first event of `dataset` whose dotted `fields` (`url__path` for url.path) match."""
    from soc_core.ecs import get_field

    for d in docs:
        if d["event"]["dataset"] == dataset and all(
                get_field(d, k.replace("__", ".")) == v for k, v in fields.items()):
            return d
    raise AssertionError(f"no {dataset} event with {fields}")
