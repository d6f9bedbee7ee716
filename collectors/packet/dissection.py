"""Deep dissection on demand: the packets of a capture decoded by Wireshark's dissectors
(pyshark over tshark's PDML), as an analyst reads them in Wireshark: per packet the
protocol tree (name, showname, value of each field Wireshark shows), the bytes as a hex
dump, and the "follow TCP/HTTP stream" views.

Speed matters less than depth here, but the input may be hostile (a capture an attacker
shaped): every tshark run has a time limit, every output a size cap, and what a damaged
capture lets through is returned with a note saying what was lost, never an exception.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from collectors.packet.pcapfile import open_capture
from collectors.packet.stats import CaptureStats
from collectors.packet.tshark import check_tshark

FOLLOW_KINDS = ("tcp", "http")
# tshark's stderr lines that say nothing about the capture
_NOISE = ("Running as user", "This could be dangerous")
_HIDDEN_PROTOS = frozenset({"geninfo"})


@dataclass(frozen=True)
class Limits:
    """Caps on what one dissection returns (a flow may hold millions of packets)."""

    packets: int = 200
    hex_bytes: int = 16384  # per packet
    tree_nodes: int = 4000  # per packet
    follow_bytes: int = 262144
    timeout_s: float = 30.0


@dataclass
class Dissection:
    packets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    truncated: bool = False

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {"packets": self.packets, "notes": self.notes, "truncated": self.truncated}


class DissectError(ValueError):
    """A request the dissector cannot answer at all (no tshark, a bad display filter)."""


# -- the protocol tree ----------------------------------------------------------------

def _node(el: Any, budget: list[int]) -> dict[str, Any] | None:
    """One PDML <proto>/<field> as {name, showname, show, value, pos, size, children};
    fields Wireshark hides in its tree (hide="yes") are left out, as in the GUI."""
    a = el.attrib
    if a.get("hide") == "yes" or budget[0] <= 0:
        return None
    budget[0] -= 1
    node: dict[str, Any] = {"name": a.get("name", "")}
    showname = a.get("showname") or a.get("show") or ""
    node["showname"] = showname
    for key in ("show", "value"):
        if a.get(key):
            node[key] = a[key]
    if a.get("pos") is not None and a.get("size") is not None:
        try:
            node["pos"], node["size"] = int(a["pos"]), int(a["size"])
        except ValueError:
            pass
    kids = [n for n in (_node(c, budget) for c in el if isinstance(c.tag, str)) if n]
    if kids:
        node["children"] = kids
    return node


def _packet_tree(xml: bytes, limits: Limits) -> dict[str, Any]:
    parser = etree.XMLParser(huge_tree=True, recover=True, resolve_entities=False,
                             no_network=True)
    root = etree.fromstring(xml, parser)
    budget = [limits.tree_nodes]
    info: dict[str, str] = {}
    layers = []
    for proto in root if root is not None else ():
        if not isinstance(proto.tag, str):
            continue
        if proto.attrib.get("name") in _HIDDEN_PROTOS:
            info = {f.attrib.get("name", ""): (f.attrib.get("show", ""),
                                               f.attrib.get("value", "")) for f in proto}
            continue
        node = _node(proto, budget)
        if node and proto.attrib.get("name") == "fake-field-wrapper":
            # PDML's wrapper of fields outside any protocol: Wireshark shows them at the top
            layers.extend(node.get("children", []))
        elif node:
            layers.append(node)
    num = info.get("num", ("", ""))[0]
    return {"number": int(num) if num.isdigit() else 0,
            "epoch": info.get("timestamp", ("", ""))[1],
            "layers": layers, "tree_capped": budget[0] <= 0}


@functools.cache
def _pyshark() -> Any:
    """pyshark, imported on first use (it is heavy, and most users of this package never
    dissect), with the capture class that keeps Wireshark's tree."""
    import pyshark
    from pyshark.capture.capture import StopCapture, TSharkCrashException
    from pyshark.tshark.output_parser.tshark_xml import TsharkXmlParser

    class TreeParser(TsharkXmlParser):
        """pyshark's PDML stream splitter with a parse that keeps the tree (pyshark's own
        packet objects flatten each layer's fields, losing the nesting Wireshark shows)."""

        def __init__(self, limits: Limits) -> None:
            super().__init__(parse_summaries=False)
            self._limits = limits

        def _parse_single_packet(self, packet: bytes) -> dict[str, Any]:
            return _packet_tree(packet, self._limits)

    class TreeCapture(pyshark.FileCapture):
        def __init__(self, path: str, limits: Limits, **kwargs: Any) -> None:
            super().__init__(path, **kwargs)
            self._limits = limits

        def _setup_tshark_output_parser(self) -> TreeParser:  # pyshark's hook, pinned <0.7
            return TreeParser(self._limits)

        def _created_new_process(self, parameters: Any, process: Any,
                                 process_name: str = "TShark") -> None:
            self.started = [*getattr(self, "started", []), process]  # reaped in _trees
            super()._created_new_process(parameters, process, process_name)

        async def _handle_process_stderr_forever(self, stderr: Any) -> None:
            # all of tshark's stderr (pyshark keeps the last line only: a filter error's
            # last line is the caret under the bad token), bounded
            self.stderr_lines: list[str] = []
            while line := await stderr.readline():
                if len(self.stderr_lines) < 50:
                    self.stderr_lines.append(line.decode("utf-8", "replace").rstrip())

    _quiet_child_watcher()
    return TreeCapture, StopCapture, TSharkCrashException


class _ReapRace(logging.Filter):
    """asyncio's default child watcher reaps each subprocess from a thread of its own,
    racing the Popen.poll of a closing transport: on a loaded machine it then logs
    "Unknown child process pid N, will report returncode 255" for a tshark that ended
    normally (we never read tshark's exit status from there). Only that line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unknown child process pid")


def _quiet_child_watcher() -> None:
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _ReapRace) for f in log.filters):
        log.addFilter(_ReapRace())


def tshark_error(lines: str | None) -> str:
    """The last line of tshark's stderr that says something about the capture."""
    keep = [ln.strip() for ln in (lines or "").splitlines()
            if ln.strip() and not any(n in ln for n in _NOISE)]
    return keep[-1][:300] if keep else ""


def _trees(path: str, display_filter: str | None, limits: Limits, out: Dissection
           ) -> list[dict[str, Any]]:
    """The packets' trees through pyshark, at most `limits.packets`, within the time limit,
    in a thread of their own: the caller's thread may already run an event loop (an async
    server, a browser driver), and a thread runs one loop at a time."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_trees_in_thread, path, display_filter, limits, out).result()


def _trees_in_thread(path: str, display_filter: str | None, limits: Limits, out: Dissection
                     ) -> list[dict[str, Any]]:
    tree_capture, stop_capture, crash = _pyshark()
    got: list[dict[str, Any]] = []

    def keep(pkt: dict[str, Any]) -> None:
        if len(got) >= limits.packets:
            out.truncated = True
            raise stop_capture()
        got.append(pkt)

    loop = asyncio.new_event_loop()  # our own: callers may be threads of a web server
    cap = tree_capture(path, limits, display_filter=display_filter, eventloop=loop,
                       override_prefs={"tcp.desegment_tcp_streams": "TRUE"})
    try:
        cap.apply_on_packets(keep, timeout=limits.timeout_s)
    except TimeoutError:
        out.truncated = True
        out.note(f"dissection stopped after {limits.timeout_s:g} s: the packets shown "
                 f"are those decoded until then")
    except crash:
        pass  # what it said is in its stderr, read below
    finally:
        try:
            loop.run_until_complete(cap.close_async())
        except crash:
            pass
        # reaped here, by asyncio's watcher: a tshark left unwaited would be reaped by the
        # next subprocess call instead, and the watcher would log a bogus exit status
        for proc in getattr(cap, "started", []):
            if proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
                try:
                    loop.run_until_complete(asyncio.wait_for(proc.wait(), 30))
                except TimeoutError:
                    pass
        cap._running_processes.clear()  # (pyshark's __del__ would use the closed loop)
        loop.close()
    lines = getattr(cap, "stderr_lines", [])
    first = next((ln for ln in lines if ln.startswith("tshark:") and
                  not any(n in ln for n in _NOISE)), "")
    if not got and first and "file" not in first and "capture" not in first:
        # tshark refused before reading a packet, not for the file: the filter
        raise DissectError(f"bad display filter: {first[8:].strip()[:300]}")
    err = tshark_error("\n".join(lines))
    if err:
        _explain(err, out)
    return got


def _explain(err: str, out: Dissection) -> None:
    if "cut short" in err:
        out.note("the capture is truncated (cut short in the middle of a packet): the "
                 "packets before the cut are shown")
    elif "isn't a capture file" in err or "unknown file format" in err:
        out.note("not a capture file tshark can read")
    else:
        out.note(f"tshark reported: {err}")


# -- columns and bytes ----------------------------------------------------------------

def _run(cmd: list[str], limits: Limits, out: Dissection, what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=limits.timeout_s,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        out.truncated = True
        out.note(f"{what} stopped after {limits.timeout_s:g} s")
        return (exc.stdout or b"").decode("utf-8", "replace")
    err = tshark_error(done.stderr.decode("utf-8", "replace"))
    if done.returncode != 0 and err and "cut short" not in err:
        out.note(f"{what}: {err}")
    return done.stdout.decode("utf-8", "replace")


def _frames_filter(numbers: list[int]) -> str:
    return "frame.number in {" + ",".join(str(n) for n in numbers) + "}"


def _columns(path: str, numbers: list[int], limits: Limits, out: Dissection
             ) -> dict[int, tuple[str, str]]:
    """Wireshark's Protocol and Info columns of the frames `numbers`."""
    cmd = [check_tshark(), "-n", "-r", path, "-Y", _frames_filter(numbers), "-T", "fields",
           "-E", "separator=/t", "-E", "quote=n", "-e", "frame.number",
           "-e", "_ws.col.Protocol", "-e", "_ws.col.Info"]
    cols: dict[int, tuple[str, str]] = {}
    for line in _run(cmd, limits, out, "the packet list").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].isdigit():
            cols[int(parts[0])] = (parts[1], parts[2][:500])
    return cols


def _raw_bytes(path: str, numbers: list[int], out: Dissection) -> dict[int, bytes]:
    """The bytes of frames `numbers` (tshark's numbering: records in file order), read
    with the collector's own pcap/pcapng walker (no second tshark run)."""
    wanted, found = set(numbers), {}
    cap = open_capture(path)
    try:
        for n, (_ts, _link, start, end) in enumerate(cap.frames(CaptureStats()), 1):
            if n in wanted:
                found[n] = bytes(cap.buf[start:end])
                if len(found) == len(wanted):
                    break
    finally:
        cap.close()
    if len(found) < len(wanted):
        out.note("the bytes of some packets could not be read back from the capture")
    return found


def tree_text(layers: list[dict[str, Any]], depth: int = 0) -> list[str]:
    """The tree as `tshark -V` prints it: one showname a line, four spaces a level."""
    out = []
    for n in layers:
        out.append("    " * depth + (n.get("showname") or n.get("name") or ""))
        out.extend(tree_text(n.get("children") or [], depth + 1))
    return out


def hex_dump(data: bytes) -> str:
    """Wireshark's bytes pane: offset, sixteen bytes in hex, their printable characters."""
    lines = []
    for off in range(0, len(data), 16):
        row = data[off:off + 16]
        hexes = " ".join(f"{b:02x}" for b in row[:8])
        if len(row) > 8:
            hexes += "  " + " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{off:04x}  {hexes:<49}  {text}")
    return "\n".join(lines)


def _first(layers: list[dict[str, Any]], names: tuple[str, ...]) -> str:
    """The shown value of the first of `names` (in that order of preference) in the tree."""
    for name in names:
        stack = list(layers)
        while stack:
            n = stack.pop(0)
            if n.get("name") == name:
                return n.get("show", "")
            stack[0:0] = n.get("children", [])
    return ""


def _summary(tree: dict[str, Any]) -> dict[str, Any]:
    layers = tree["layers"]
    src = _first(layers, ("ip.src", "ipv6.src", "arp.src.proto_ipv4", "eth.src"))
    dst = _first(layers, ("ip.dst", "ipv6.dst", "arp.dst.proto_ipv4", "eth.dst"))
    sport = _first(layers, ("tcp.srcport", "udp.srcport", "sctp.srcport"))
    dport = _first(layers, ("tcp.dstport", "udp.dstport", "sctp.dstport"))
    when = ""
    try:
        when = datetime.fromtimestamp(float(tree["epoch"]), UTC).isoformat(
            timespec="microseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        pass
    stream = _first(layers, ("tcp.stream",))
    return {"number": tree["number"], "time": when,
            "source": f"{src}:{sport}" if sport else src,
            "destination": f"{dst}:{dport}" if dport else dst,
            "length": int(_first(layers, ("frame.len",)) or 0),
            "protocols": _first(layers, ("frame.protocols",)),
            "tcp_stream": int(stream) if stream.isdigit() else None}


# -- the public functions -------------------------------------------------------------

def check_capture(path: str | os.PathLike) -> str:
    """The path as a string; CaptureError (one line) when it is missing or not a capture."""
    open_capture(path).close()
    return str(path)


def dissect(path: str | os.PathLike, *, display_filter: str | None = None,
            limits: Limits = Limits(), with_hex: bool = True,
            only: int | None = None) -> Dissection:
    """The packets of `path` (those `display_filter` selects; `only`: that frame number
    alone), each {"number", "time", "source", "destination", "length", "protocols",
    "tcp_stream", "protocol", "info", "layers": tree, "hex"}; capped by `limits`."""
    check_tshark()
    path = check_capture(path)
    out = Dissection()
    filt = display_filter
    if only is not None:
        filt = f"frame.number == {int(only)}" + (f" && ({filt})" if filt else "")
    if display_filter and (len(display_filter) > 2000 or "\n" in display_filter
                           or "\x00" in display_filter):
        raise DissectError("bad display filter: one line of at most 2000 characters")
    trees = _trees(path, filt, limits, out)
    if out.truncated and len(trees) >= limits.packets:
        out.note(f"only the first {limits.packets} packets are shown")
    numbers = [t["number"] for t in trees if t["number"]]
    cols = _columns(path, numbers, limits, out) if numbers else {}
    raw = _raw_bytes(path, numbers, out) if numbers and with_hex else {}
    for t in trees:
        p = _summary(t)
        p["protocol"], p["info"] = cols.get(t["number"], ("", ""))
        p["layers"] = t["layers"]
        if t["tree_capped"]:
            p["note"] = f"tree cut at {limits.tree_nodes} fields"
            out.note(f"packet {t['number']}: tree cut at {limits.tree_nodes} fields")
        if with_hex:
            data = raw.get(t["number"], b"")
            p["hex"] = hex_dump(data[:limits.hex_bytes])
            if len(data) > limits.hex_bytes:
                p["hex_truncated"] = True
                out.note(f"packet {t['number']}: hex dump cut at {limits.hex_bytes} bytes")
        out.packets.append(p)
    if not trees and not out.notes:
        out.note("no packets matched")
    return out


def follow(path: str | os.PathLike, kind: str = "tcp", stream: int = 0, *,
           limits: Limits = Limits()) -> dict[str, Any]:
    """Wireshark's "Follow TCP/HTTP Stream" of TCP stream `stream` (tshark -z follow):
    {"kind", "stream", "nodes": [client, server], "chunks": [{"from": 0|1, "text",
    "bytes"}], "bytes", "truncated", "notes"}; text is the bytes decoded as UTF-8 where
    they are, Latin-1 otherwise (every byte shown, none lost)."""
    if kind not in FOLLOW_KINDS:
        raise DissectError(f"unknown stream kind {kind!r}: one of {', '.join(FOLLOW_KINDS)}")
    if not isinstance(stream, int) or stream < 0:
        raise DissectError("the stream index is a whole number ≥ 0")
    check_tshark()
    path = check_capture(path)
    notes = Dissection()
    text = _run([check_tshark(), "-n", "-r", path, "-q", "-z",
                 f"follow,{kind},raw,{stream}"], limits, notes, "follow stream")
    nodes: list[str] = []
    chunks: list[dict[str, Any]] = []
    total = 0
    truncated = notes.truncated
    for line in text.splitlines():
        if line.startswith("Node ") and ":" in line:
            nodes.append(line.split(":", 1)[1].strip())
            continue
        body = line.strip()
        if not body or body.startswith(("=", "Follow:", "Filter:")):
            continue
        try:
            data = bytes.fromhex(body)
        except ValueError:
            continue
        room = limits.follow_bytes - total
        if room <= 0:
            truncated = True
            break
        if len(data) > room:
            data, truncated = data[:room], True
        total += len(data)
        side = 1 if line.startswith("\t") else 0
        if chunks and chunks[-1]["from"] == side:
            chunks[-1]["raw"] += data
        else:
            chunks.append({"from": side, "raw": data})
    if truncated:
        notes.note(f"the stream is cut at {limits.follow_bytes} bytes")
    if not chunks:
        notes.note(f"TCP stream {stream} carries no data in this capture")
    return {"kind": kind, "stream": stream, "nodes": nodes,
            "chunks": [{"from": c["from"], "text": _text(c["raw"]), "bytes": len(c["raw"])}
                       for c in chunks],
            "bytes": total, "truncated": truncated, "notes": notes.notes}


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def flow_filter(event: dict[str, Any], *, slack_s: float = 1.0) -> str:
    """A display filter for an ECS flow event's packets: its 5-tuple, both directions,
    within its time span (± `slack_s`)."""
    src, dst = event.get("source") or {}, event.get("destination") or {}
    sip, dip = src.get("ip"), dst.get("ip")
    try:  # addresses as ipaddress prints them: nothing else reaches the filter text
        sip, dip = ipaddress.ip_address(str(sip)), ipaddress.ip_address(str(dip))
    except ValueError:
        raise DissectError("the flow has no valid source.ip/destination.ip") from None
    v = "ipv6" if sip.version == 6 else "ip"
    transport = ((event.get("network") or {}).get("transport") or "").lower()
    sport, dport = src.get("port"), dst.get("port")
    ends = [f"{v}.src == {sip} && {v}.dst == {dip}", f"{v}.src == {dip} && {v}.dst == {sip}"]
    if transport in ("tcp", "udp", "sctp") and sport is not None and dport is not None:
        ends = [f"{ends[0]} && {transport}.srcport == {int(sport)} && "
                f"{transport}.dstport == {int(dport)}",
                f"{ends[1]} && {transport}.srcport == {int(dport)} && "
                f"{transport}.dstport == {int(sport)}"]
    filt = f"(({ends[0]}) || ({ends[1]}))"
    ev = event.get("event") or {}
    from soc_core import ecs

    span = []
    for key, sign in (("start", -1), ("end", 1)):
        value = ev.get(key) or (event.get("@timestamp") if key == "start" else None)
        if value:
            try:
                t = ecs.parse_time(value).timestamp() + sign * slack_s
            except ecs.EventError:
                continue
            span.append(f"frame.time_epoch {'>=' if sign < 0 else '<='} {t:.6f}")
    return " && ".join([filt, *span])


__all__ = ["FOLLOW_KINDS", "DissectError", "Dissection", "Limits", "check_capture",
           "dissect", "flow_filter", "follow", "hex_dump", "tree_text"]
