"""The audit trail (等保 安全审计): durable, hash-chained, checkpointed records of who did what.

Every layer that must account for an action writes here: the crypto service (each use of
a key) and soc_api (state changes and privileged reads). The core owns it so both can.

Interface (everything else is internal):

    trail = AuditTrail.from_config(cfg, name="api", store=None, signer=<platform>)
    trail = AuditTrail(directory, store, name="api", signer=None, ...)   # tests, tools
    trail.check()                      # raises AuditUnavailable when records cannot be kept
    doc = trail.record(action=..., outcome=..., user=..., role=None, department=None,
                       object=None, source_ip=None, request_id=None, reason=None,
                       message=None, extra=None, category=None, type=None)
    docs = trail.record_many([{...kwargs of record...}, ...])   # one disk write
    trail.flush(timeout)               # wait until the store holds everything (tests, CLI)
    trail.status()                     # chain, head seq, bytes waiting, store down, last error
    trail.close()
    report = verify(store, start=None, end=None, verifier=None, heads=local_heads(dir))
    report.ok, report.problems (chain, seq, id, what), report.to_dict()
    audit_dir(cfg)                     # where the slots are (`audit.dir`, <data_dir>/audit)
    Actor(name, role, department, source_ip, request_id)   # who, for the crypto service

Durability: `record` appends the document to an on-disk spool (`soc_core.spool`) before it
returns, so a record survives the process being killed right after; surviving power loss
depends on the fsync policy (`audit.fsync`: "interval" by default, "always" to fsync every
append; the drain fsyncs a batch before it reaches the store). A background thread moves
spooled records into the event store in batches and acknowledges them only after the store
took them; while the store is down they wait on disk. The spool is bounded
(`audit.spool_max_mb`): when it is full `check()` and `record()` raise AuditUnavailable,
and callers refuse the action (fail closed).

Draining elsewhere: `drain="external"` (`audit.drain`; `govsoc api serve` with several
workers sets it) leaves the store to `soc_core.audit_drain.AuditDrain` in another process,
which reads the slots' spools, stores, saves the heads and acknowledges; the writer only
appends (and fsyncs, and checkpoints). The guarantees are the same.

Chains: each process takes its own slot `<audit.dir>/<name>-<k>` (the first whose flock is
free) and its own chain. A record carries `govsoc.audit.{chain, seq, prev, prev_time, hash}`:
`hash` is the SM3 of the record's canonical JSON (sorted keys, without `hash` itself),
`prev` the hash of the record before it. The event id is `<chain>.<seq>`, so a spool replayed
after a crash yields duplicates the store drops, never second copies. A restarted process
takes the crashed one's slot, drains what it left and continues its chain.

Checkpoints: every `audit.checkpoint_every` records or `audit.checkpoint_seconds` seconds, a
record with `event.action: audit.checkpoint` carries the chain, seq and hash of the last
record signed by the injected `signer(bytes) -> {"key_id", "version", "alg", "value"}` (SM2,
base64; `crypto_svc.platform_signer` provides one, and `from_config` finds it through the
`govsoc.audit` entry point). Without a signer no checkpoints are made.
`verify` checks signatures through `verifier(bytes, signature_dict) -> bool`.

Records never hold secrets: fields named like passwords, tokens, secrets or key material in
`object` / `extra` are replaced by "[redacted]". Retention follows the store's
`retention_days`; below 180 days (`MIN_RETENTION_DAYS`) the configuration is refused.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from soc_core import ecs
from soc_core.config import ConfigError, redact_url
from soc_core.sm3 import sm3_hex
from soc_core.spool import HEADER_SIZE, Record, Spool, SpoolBusy, SpoolError, SpoolFull

__all__ = ["CHECKPOINT_ACTION", "DATASET", "MIN_RETENTION_DAYS", "Actor", "AuditTrail",
           "AuditUnavailable", "Problem", "Report", "audit_dir", "checkpoint_payload",
           "local_heads", "record_hash", "verify"]

DATASET = "govsoc.audit"
CHECKPOINT_ACTION = "audit.checkpoint"
MIN_RETENTION_DAYS = 180  # 等保 level 3 / 网络安全法 art. 21: six months at least
MAX_SLOTS = 256
ACK_SECONDS = 1.0  # at most this long between a stored batch and its acknowledgement
_CACHE_DOCS = 10_000  # spooled documents kept in memory for the drain (~3.4 kB each)
HEAD_FILE = "head.json"
DRAIN_STATUS_FILE = "drain.json"  # the external drain's state, in the audit directory
DRAIN_MODES = ("inline", "external")
REJECTED_FILE = "rejected.ndjson"
REDACTED = "[redacted]"

Signer = Callable[[bytes], dict[str, Any]]
PLATFORM: Any = object()  # from_config's default signer: the installed platform signer
Verifier = Callable[[bytes, dict[str, Any]], bool]

_SECRET_KEY = re.compile(r"(?:^|[_.-])(?:password|passwd|passphrase|secret|token|private_?key|"
                         r"privkey|key_material|master_key|otp|cookie|authorization|"
                         r"credentials?)s?$", re.IGNORECASE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AuditUnavailable(RuntimeError):
    """Records cannot be kept (spool full, disk failing, trail closed): the caller must
    refuse the action. The text names no store URL or credential."""


@dataclass(frozen=True)
class Actor:
    """Who acts, for layers that record on a caller's behalf (the crypto service takes an
    Actor, or any object with `.name` and `audit_context()`, wherever it takes `user`)."""

    name: str
    role: Any = None
    department: str | None = None
    source_ip: str | None = None
    request_id: str | None = None

    def audit_context(self) -> dict[str, Any]:
        """The arguments of `AuditTrail.record` besides `user`."""
        return {"role": self.role, "department": self.department,
                "source_ip": self.source_ip, "request_id": self.request_id}


# -- the record format -------------------------------------------------------------------
def record_hash(doc: dict[str, Any]) -> str:
    """SM3 (hex) of a record's canonical JSON: sorted keys, compact, without
    `govsoc.audit.hash`."""
    audit = doc.get("govsoc", {}).get("audit", {})
    if "hash" in audit:
        doc = {**doc, "govsoc": {**doc["govsoc"],
                                 "audit": {k: v for k, v in audit.items() if k != "hash"}}}
    return sm3_hex(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


def checkpoint_payload(chain: str, seq: int, digest: str) -> bytes:
    """The bytes a checkpoint signature covers: the chain, the seq and hash of the last
    record before the checkpoint."""
    return orjson.dumps({"chain": chain, "hash": digest, "seq": seq},
                        option=orjson.OPT_SORT_KEYS)


@functools.lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def _has_secret(value: Any) -> bool:
    if type(value) is dict:
        for k, v in value.items():
            if (type(k) is str and _secret_name(k)) or (
                    type(v) in (dict, list) and _has_secret(v)):
                return True
    elif type(value) is list:
        return any(_has_secret(v) for v in value)
    return False


def _safe(value: Any) -> Any:
    """`value`, or a copy with every field named like a secret replaced by "[redacted]"."""
    return _redact(value) if _has_secret(value) else value


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _secret_name(k) else _redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


_second: tuple[int, str] = (-1, "")  # the last second formatted: most records share it


def _format_ms(ms: int) -> str:
    """`ecs.format_time` of epoch milliseconds, cheaply (one call per record)."""
    global _second
    sec, milli = divmod(ms, 1000)
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != sec:
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return cached[1] + _MILLIS[milli]


_MILLIS = tuple(f".{m:03d}Z" for m in range(1000))


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _source(addr: str) -> dict[str, Any]:
    """`source.ip` when the address is one, else `source.address` (a test client's
    "testclient", a unix socket): the store would refuse a bad `source.ip`."""
    if type(addr) is str and _is_ip(addr):
        return {"ip": addr}
    return {"address": str(addr)[:256]}


@functools.lru_cache(maxsize=4096)  # a client's address repeats request after request
def _is_ip(addr: str) -> bool:
    try:  # inet_pton: strict and in C, as the store checks it
        socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
    except (OSError, TypeError, ValueError):
        return False
    return True


def save_head(slot: Path, head: _Head, fsync: str) -> None:
    """Saved before the spool is acknowledged, and durable (unless fsync is "never"): a
    head older than what the store holds would make the chain reuse stored ids."""
    tmp = slot / (HEAD_FILE + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps({"chain": head.chain, "seq": head.seq, "hash": head.hash,
                             "time": head.time, "checkpointed": head.checkpointed}))
        if fsync != "never":
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, slot / HEAD_FILE)
    if fsync != "never":
        fd = os.open(slot, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def head_of(docs: list[ecs.Prepared]) -> _Head:
    """The chain head after the last of `docs` (what the store took)."""
    last = docs[-1].doc
    a = last["govsoc"]["audit"]
    return _Head(a["chain"], a["seq"], a["hash"], last["@timestamp"],
                 checkpointed=last["event"]["action"] == CHECKPOINT_ACTION)


def read_back(rec: Record) -> list[ecs.Prepared]:
    """A spool record's documents as the store takes them, stored as they were hashed.
    A record of one document holds its JSON between the brackets: taken as it is."""
    docs = orjson.loads(rec.payload)
    if len(docs) == 1:
        # the spool record's time is the document's (unless an older version wrote it):
        # checked by formatting it, cheaper than parsing the document's
        ms = rec.appended_ms
        return [prepared_record(docs[0], rec.payload[1:-1],
                                ms if _format_ms(ms) == docs[0]["@timestamp"] else None)]
    return [prepared_record(d, orjson.dumps(d)) for d in docs]


class StoreLink:
    """The store a drain writes to: one given (its caller's: never closed here), or a URL
    or factory the drain connects at its first write, closes after a failed write (and
    connects again at the next) and closes at the end; or none (nothing is drained)."""

    def __init__(self, store: Any) -> None:
        given = store is None or hasattr(store, "write")
        self.store = store if given else None
        self._connect = None if given else (store if callable(store)
                                            else _url_opener(str(store)))

    @property
    def configured(self) -> bool:
        return self.store is not None or self._connect is not None

    def write(self, docs: list[ecs.Prepared]) -> Any:
        if self.store is None:
            assert self._connect is not None
            self.store = self._connect()
        return self.store.write(docs)

    def failed(self, exc: Exception, errors: deque[str]) -> None:
        """A failed write noted in `errors` (redacted); a store of its own is dropped."""
        errors.append(redact_url(f"audit write failed: {type(exc).__name__}: {exc}")[:500])
        if self._connect is not None:
            self.close()

    def close(self) -> None:
        if self._connect is not None and self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
            self.store = None


def audit_dir(cfg: Any) -> Path:
    """Where the trails' slots are: `audit.dir`, by default `<data_dir>/audit`."""
    return Path(cfg.get("audit.dir") or Path(cfg.data_dir) / "audit")


def keep_rejected(slot: Path, result: Any, errors: deque[str]) -> None:
    """Documents the store refused (which should never happen): kept on disk beside the
    spool rather than lost, and named in `errors`."""
    if result.rejected:
        with open(slot / REJECTED_FILE, "ab") as fh:
            for rej in result.rejected:
                fh.write(orjson.dumps(rej.doc) + b"\n")
                errors.append(f"audit record {rej.id} rejected: {rej.reason}"[:500])


class Recent:
    """The newest `keep` records, oldest first, read as documents (`recent[-1]`, iteration,
    `len`). Kept as the JSON the spool holds and parsed when read: bytes are invisible to
    the cyclic GC, whereas a kept document was ~6 tracked containers, and the API's 1,000
    newest made every young-generation collection of a worker (one every ~80 requests) and
    the full ones walk ~6,000 more objects."""

    def __init__(self, keep: int) -> None:
        self._texts: deque[bytes] = deque(maxlen=keep)
        self.append, self.extend = self._texts.append, self._texts.extend

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return orjson.loads(self._texts[i])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (orjson.loads(t) for t in list(self._texts))  # a copy: appends go on


@dataclass
class _Head:
    chain: str
    seq: int = 0
    hash: str | None = None
    time: str | None = None
    ms: int = 0
    checkpointed: bool = True  # the last record is a checkpoint (or there is none)


# -- the writer ----------------------------------------------------------------------------
class AuditTrail:
    """One process's chain of audit records: durable on return, drained to the store."""

    def __init__(self, directory: str | os.PathLike[str], store: Any = None, *,
                 name: str = "audit", signer: Signer | None = None, fsync: str = "interval",
                 fsync_interval: float = 1.0, max_bytes: int = 1024 * 1024 * 1024,
                 checkpoint_every: int = 10_000, checkpoint_seconds: float = 60.0,
                 drain_batch: int = 250, drain_interval: float = 1.0,
                 retry_max: float = 10.0, keep: int = 1000, drain: str = "inline") -> None:
        if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
            raise ValueError(f"audit trail name {name!r}: 1-32 lowercase letters, digits, _")
        if drain not in DRAIN_MODES:
            raise ValueError(f"audit drain {drain!r}: one of {', '.join(DRAIN_MODES)}")
        self.name = name
        self.root = Path(directory)
        # "external": another process (`soc_core.audit_drain.AuditDrain`, run by the API's
        # supervisor) moves this process's records to the store; this one only appends
        self.external = drain == "external"
        if self.external:
            store = None
        self.signer = signer
        self.max_bytes = max_bytes
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.drain_batch = drain_batch
        self.drain_interval = drain_interval
        self.retry_max = retry_max
        self.errors: deque[str] = deque(maxlen=100)  # redacted texts, newest last
        self.recent = Recent(keep)  # this process's newest records (tests, diagnostics)
        self._link = StoreLink(store)
        # a trail with a background thread fsyncs there: a request never waits for one
        background = store is not None or signer is not None or self.external
        self.spool, self.slot = self._take_slot(fsync, fsync_interval, background)
        with self.spool.drain_paused():  # no drainer removes the tail while it is read
            self._head = self._recover()
        self._lock = threading.Lock()
        # a tail a previous process left without a checkpoint gets one at the next chance
        self._since_cp = 0 if self._head.checkpointed else 1
        self._last_cp = time.monotonic()
        # (segment, offset) of a spool record -> (its documents as the store takes them,
        # the offset after it)
        self._cache: dict[tuple[int, int], tuple[list[ecs.Prepared], int]] = {}
        self._cached_docs = 0
        self._closed = False
        self._down = False  # the last store write failed
        # the span the store took and the spool still holds (see _ack_stored), its head
        self._unacked: Record | None = None
        self._unacked_head: _Head | None = None
        self._acked_at = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()  # flush/close: drain now, not at the next interval
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"audit-{name}",
                                            daemon=True)
            self._thread.start()

    @classmethod
    def from_config(cls, cfg: Any = None, *, name: str = "api", store: Any = None,
                    signer: Any = PLATFORM) -> AuditTrail:
        """A trail from the configuration: `audit.dir` (default `<data_dir>/audit`),
        `audit.fsync` ("interval"|"always"|"never"), `audit.fsync_interval` (1.0 s),
        `audit.spool_max_mb` (1024), `audit.checkpoint_every` (10000),
        `audit.checkpoint_seconds` (60), `audit.drain_interval` (1.0 s between batches to
        the store once it caught up); the store is `store` (an EventStore, URL or
        factory) or else `store_url`, connected in the background. Checkpoints are signed
        by `signer`, by default the platform signer an installed package registers
        (entry point `govsoc.audit:signer`, crypto_svc's platform key; none without a
        master secret); `signer=None`: no checkpoints."""
        if cfg is None:
            from soc_core.config import load_config

            cfg = load_config()
        check_retention(cfg)
        if signer is PLATFORM:
            signer = _installed_signer(cfg)
        try:
            return cls(audit_dir(cfg), store if store is not None else cfg.store_url, name=name,
                       signer=signer, fsync=str(cfg.get("audit.fsync", "interval")),
                       fsync_interval=float(cfg.get("audit.fsync_interval", 1.0)),
                       max_bytes=int(float(cfg.get("audit.spool_max_mb", 1024)) * 1024 * 1024),
                       checkpoint_every=int(cfg.get("audit.checkpoint_every", 10_000)),
                       checkpoint_seconds=float(cfg.get("audit.checkpoint_seconds", 60)),
                       drain_interval=float(cfg.get("audit.drain_interval", 1.0)),
                       drain=str(cfg.get("audit.drain", "inline")))
        except (SpoolError, ValueError) as exc:
            raise ConfigError(f"audit trail: {exc}") from exc

    # -- slot and chain ----------------------------------------------------------------
    def _take_slot(self, fsync: str, fsync_interval: float, background: bool
                   ) -> tuple[Spool, Path]:
        for k in range(MAX_SLOTS):
            slot = self.root / f"{self.name}-{k}"
            try:
                return Spool(slot, fsync=fsync, fsync_interval=fsync_interval,
                             max_bytes=self.max_bytes, background_sync=background,
                             acks="external" if self.external else "own"), slot
            except SpoolBusy:
                continue
        raise SpoolError(f"all {MAX_SLOTS} audit slots {self.root}/{self.name}-* are in use")

    def _recover(self) -> _Head:
        """The chain head: the newest record still in the spool, else the last one the
        store acknowledged (head.json), else a new chain."""
        head = None
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            saved = json.loads((self.slot / HEAD_FILE).read_text())
            head = _Head(saved["chain"], int(saved["seq"]), saved["hash"], saved["time"],
                         checkpointed=bool(saved.get("checkpointed", True)))
        last = self.spool.last()
        if last is not None:
            a = orjson.loads(last.payload)[-1]
            spooled = a["govsoc"]["audit"]
            if head is None or spooled["seq"] > head.seq:
                head = _Head(spooled["chain"], spooled["seq"], spooled["hash"], a["@timestamp"],
                             checkpointed=a["event"]["action"] == CHECKPOINT_ACTION)
        if head is None:
            head = _Head(f"{self.name}-{self.slot.name.rsplit('-', 1)[1]}-"
                         f"{secrets.token_hex(6)}")
            self._save_head(head)
        if head.time:
            head.ms = ecs.to_millis(head.time)
        return head

    def _save_head(self, head: _Head) -> None:
        save_head(self.slot, head, self.spool.fsync)

    @property
    def chain(self) -> str:
        return self._head.chain

    # -- writing ------------------------------------------------------------------------
    def check(self) -> None:
        """Raise AuditUnavailable unless a record can be kept now."""
        if self._closed:
            raise AuditUnavailable("the audit trail is closed: the action is refused")
        waiting = self.spool.pending_bytes
        if waiting + 65536 > self.max_bytes:
            raise AuditUnavailable(
                f"audit records cannot reach the event store and the spool is full "
                f"({waiting} bytes waiting): actions are refused until it recovers")

    def record(self, *, action: str, outcome: str, user: str, role: Any = None,
               department: str | None = None, object: Any = None,  # noqa: A002
               source_ip: str | None = None, request_id: str | None = None,
               reason: str | None = None, message: str | None = None,
               extra: dict[str, Any] | None = None, category: Any = None,
               type: Any = None) -> dict[str, Any]:  # noqa: A002
        """Append one record; it is on disk when this returns. Returns the document."""
        # positionally: a call with 13 keywords costs more than the fields it passes
        return self._append([self._body(action, outcome, user, role, department, object,
                                        source_ip, request_id, reason, message, extra,
                                        category, type)])[0]

    def record_many(self, entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append several records (each a dict of `record`'s arguments) with one disk
        write: the batch path of the signing API."""
        bodies = [self._body(**e) for e in entries]
        return self._append(bodies) if bodies else []

    def _append(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Seal `bodies` onto the chain and spool them in one write (the documents)."""
        with self._lock:
            if self._closed:
                raise AuditUnavailable("the audit trail is closed: the action is refused")
            head = self._head
            saved = (head.seq, head.hash, head.time, head.ms, self._since_cp)
            # each document serialized once: the spool record is their JSON array, and the
            # drain hands the same bytes to the store
            sealed = [self._seal(body) for body in bodies]
            self._since_cp += len(sealed)
            if self.signer is not None and self._since_cp >= self.checkpoint_every:
                sealed.append(self._checkpoint_doc())
            payload = (b"[" + sealed[0][1] + b"]" if len(sealed) == 1
                       else b"[" + b",".join([t[1] for t in sealed]) + b"]")
            try:
                # the clock the newest record read (_seal) is the spool record's time too
                where = self.spool.append(payload, sealed[-1][2])
            except (SpoolFull, SpoolError, OSError) as exc:
                # nothing was kept: the chain goes on from the record before
                head.seq, head.hash, head.time, head.ms, self._since_cp = saved
                why = "spool full" if isinstance(exc, SpoolFull) else type(exc).__name__
                raise AuditUnavailable(f"the audit record cannot be kept ({why}): "
                                       f"the action is refused") from None
            self._remember(where, len(payload), sealed)
        self.recent.extend([t[1] for t in sealed])
        return [t[0] for t in sealed[:len(bodies)]]

    def _body(self, action: str, outcome: str, user: str, role: Any = None,
              department: str | None = None, object: Any = None,  # noqa: A002
              source_ip: str | None = None, request_id: str | None = None,
              reason: str | None = None, message: str | None = None,
              extra: dict[str, Any] | None = None, category: Any = None,
              type: Any = None) -> dict[str, Any]:  # noqa: A002
        """Everything but the chain fields and time (set under the lock). Only what the
        record says: a field without a value, and what only repeats other fields or a
        default (the category and type "api"/"access", a message made of the action, user
        and outcome, `source.address` beside `source.ip`, `event.sequence` beside the
        chain's seq), is left out. Each byte costs the chain's SM3, both serializations
        and the store's row; the API writes one record a request. (`event.kind` and
        `ecs.version` stay: a record written again through `EventStore.write`, as a copy
        between stores does, would be given them and no longer match its hash.)"""
        event: dict[str, Any] = {"action": action, "outcome": outcome, "dataset": DATASET,
                                 "kind": "event"}
        if category is not None:
            event["category"] = _as_list(category)
        if type is not None:
            event["type"] = _as_list(type)
        if reason:
            event["reason"] = reason
        doc: dict[str, Any] = {"event": event,
                               "user": {"name": user, "roles": _as_list(role)} if role
                               else {"name": user}}
        if department:
            doc["organization"] = {"id": department}
        if source_ip:
            doc["source"] = _source(source_ip)
        if request_id:
            doc["http"] = {"request": {"id": request_id}}
        if message:
            doc["message"] = message
        audit: dict[str, Any] = {}
        if object is not None:
            audit["object"] = _safe(object if isinstance(object, dict) else {"id": object})
        if extra:
            gov = dict(_safe(extra))
            if "audit" in gov:
                raise ValueError("extra must not hold 'audit': the chain fields live there")
            gov["audit"] = audit
        else:
            gov = {"audit": audit}
        doc["govsoc"] = gov
        doc["ecs"] = {"version": ecs.ECS_VERSION}
        return doc

    def _seal(self, doc: dict[str, Any]) -> tuple[dict[str, Any], bytes, int]:
        """Give `doc` the next seq, time and chain fields and its hash (lock held); the
        document, its JSON and its time (epoch ms)."""
        head = self._head
        ms = time.time_ns() // 1_000_000
        if ms < head.ms:  # non-decreasing along the chain
            ms = head.ms
        ts = _format_ms(ms)
        seq = head.seq + 1
        doc["@timestamp"] = ts
        doc["event"]["id"] = f"{head.chain}.{seq}"
        audit = doc["govsoc"]["audit"]
        audit["chain"] = head.chain
        audit["seq"] = seq
        audit["prev"] = head.hash
        audit["prev_time"] = head.time
        digest = sm3_hex(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))  # = record_hash
        audit["hash"] = digest
        head.seq, head.hash, head.time, head.ms = seq, digest, ts, ms
        return doc, orjson.dumps(doc), ms

    def _checkpoint_doc(self) -> tuple[dict[str, Any], bytes, int]:
        """A checkpoint over the current head (lock held). Signing goes straight to the
        signer, never through a path that records an audit event."""
        head = self._head
        cp: dict[str, Any] = {"seq": head.seq, "hash": head.hash}
        outcome, reason = "success", None
        try:
            assert self.signer is not None
            cp["signature"] = dict(self.signer(checkpoint_payload(head.chain, head.seq,
                                                                  head.hash or "")))
        except Exception as exc:  # noqa: BLE001 - a checkpoint unsigned, the chain goes on
            outcome, reason = "failure", redact_url(f"not signed: {type(exc).__name__}: "
                                                    f"{exc}")[:300]
            self.errors.append(f"audit checkpoint {reason}")
        body = self._body(action=CHECKPOINT_ACTION, outcome=outcome, user="govsoc",
                          reason=reason, category="configuration", type="info",
                          message=f"audit checkpoint of {head.chain} at seq {head.seq}")
        body["govsoc"]["audit"]["checkpoint"] = cp
        self._since_cp = 0
        self._last_cp = time.monotonic()
        return self._seal(body)  # (document, JSON, time)

    def checkpoint(self) -> dict[str, Any] | None:
        """Write a checkpoint now if records came since the last one (and a signer is
        set); returns it."""
        with self._lock:
            if self.signer is None or self._since_cp == 0 or self._closed:
                return None
            sealed = self._checkpoint_doc()
            doc, text = sealed[0], sealed[1]
            payload = b"[" + text + b"]"
            try:
                where = self.spool.append(payload, sealed[2])
            except (SpoolError, OSError) as exc:
                self.errors.append(f"audit checkpoint not kept: {type(exc).__name__}")
                return None
            self._remember(where, len(payload), [sealed])
        self.recent.append(text)
        return doc

    # -- draining -----------------------------------------------------------------------
    def _remember(self, where: tuple[int, int], size: int,
                  sealed: list[tuple[dict[str, Any], bytes, int]]) -> None:
        """Keep the documents of a spool record for the drain, which then need not parse
        them back from disk (that parse cost as much as the store write), nor have the
        store check and serialize them again: they go as `ecs.Prepared` with the JSON the
        chain hashed and the spool holds. Bounded: past `_CACHE_DOCS` waiting documents
        (the store is down) they are read from disk."""
        if self._cached_docs < _CACHE_DOCS and self._link.configured:
            self._cache[where] = ([prepared_record(*t) for t in sealed],
                                  where[1] + HEADER_SIZE + size)
            self._cached_docs += len(sealed)

    def _held_batch(self) -> tuple[list[Record], list[ecs.Prepared]] | None:
        """The oldest spooled records and their documents when this process still holds
        them (lock taken here): their positions are known, so they are not read back
        from disk (that read and its checksum cost a quarter of the drain). None when the
        oldest record is not held (left by an earlier process, or past the cache bound):
        the drain then reads the spool. The records come as one span (consecutive records
        of one segment, which the spool acknowledges as one)."""
        with self._lock:
            stored = self._unacked  # stored already: the batch continues after it
            seg, off = start = ((stored.segment, stored.end) if stored is not None
                                else self.spool.cursor())
            docs: list[ecs.Prepared] = []
            n = 0
            # the cache is in append order and loses its oldest entries as they are
            # acknowledged: a batch is its leading run that continues from the cursor
            for (s, o), (mine, end) in self._cache.items():
                if s != seg or o != off or n >= self.drain_batch:
                    break
                docs += mine
                off = end
                n += 1
        return ([Record(seg, start[1], off, 0, b"")], docs) if n else None

    def _run(self) -> None:
        retry_at, backoff = 0.0, 0.5
        # the spool's "interval" fsync is done here, never in record() (see _take_slot)
        pause = min(self.drain_interval, self.spool.fsync_interval)
        while not self._stop.is_set():
            self.spool.sync_due()
            if self.external:  # what the drainer acknowledged no longer counts as waiting
                self.spool.refresh()
            if (self.signer is not None and self._since_cp
                    and time.monotonic() - self._last_cp >= self.checkpoint_seconds):
                self.checkpoint()
            if time.monotonic() < retry_at:
                self._stop.wait(min(pause, retry_at - time.monotonic()))
                continue
            moved = self._drain_once()
            if moved is None:  # the store failed
                self._ack_stored()  # what it took before
                retry_at = time.monotonic() + backoff
                backoff = min(backoff * 2, self.retry_max)
            else:
                backoff = 0.5
                # a full batch goes on at once: batches stay small (250: ~5-10 ms of store
                # write holding the interpreter lock in an API worker, against 25-55 ms
                # measured for the ~1,600 records of a 1 s batch, every request waiting)
                if moved < self.drain_batch:  # caught up: let the next batch gather
                    self._ack_stored()
                    # (in the API's own process: every batch costs a transaction, a spool
                    # fsync and a head save; 1 s batches cost a request less than 0.2 s)
                    self._wake.wait(pause)
                    self._wake.clear()
        self._ack_stored()

    def _drain_once(self) -> int | None:
        """Move one batch from the spool to the store: the number of records moved, or
        None when the store failed (the records stay spooled)."""
        if not self._link.configured:
            return 0
        held = self._held_batch()
        if held is not None:
            recs, docs = held
            cached = len(docs)
        else:
            self._ack_stored()  # the spool is read from its cursor: past what was stored
            recs = self.spool.peek_many(self.drain_batch)
            if not recs:
                return 0
            docs = []
            cached = 0
            for rec in recs:
                entry = self._cache.get((rec.segment, rec.offset))
                if entry is not None:
                    cached += len(entry[0])
                    docs.extend(entry[0])
                else:  # read back: stored as they were hashed, like the held ones
                    docs.extend(read_back(rec))
        # what reaches the store must be durable in the spool first: after a power loss
        # the chain must resume past it, or it would reuse the ids the store holds (a
        # sync since its records were appended may cover the batch already)
        self.spool.sync_to(recs[-1].segment, recs[-1].end)
        try:
            result = self._link.write(docs)
        except Exception as exc:  # noqa: BLE001 - down or broken: the records wait on disk
            self._link.failed(exc, self.errors)
            self._down = True
            return None
        self._down = False
        keep_rejected(self.slot, result, self.errors)
        head = head_of(docs)
        if held is not None:  # acknowledged later, with the batches after it (see _ack_stored)
            span, stored = recs[0], self._unacked
            self._unacked = span if stored is None else Record(
                span.segment, stored.offset, span.end, 0, b"")
            self._unacked_head = head
        else:
            self._save_head(head)
            self.spool.ack_many(recs)
        with self._lock:
            cache = self._cache
            if held is not None:  # the span's entries are the cache's oldest
                span = recs[0]
                done = []
                for key in cache:
                    if key[0] != span.segment or key[1] >= span.end:
                        break
                    done.append(key)
                for key in done:
                    del cache[key]
            else:
                for rec in recs:
                    cache.pop((rec.segment, rec.offset), None)
            self._cached_docs -= cached
        if time.monotonic() - self._acked_at >= ACK_SECONDS:
            self._ack_stored()
        return len(docs)

    def _ack_stored(self) -> None:
        """Save the head of what the store took and acknowledge it in the spool. Done once
        a second while batches follow each other, and whenever the drain catches up, fails
        or reads the spool back, rather than after every batch: each save is two fsyncs
        (file and directory) and a cursor file, ~3 us a record at 250-record batches. The
        order is the same (the head durable, then the spool acknowledged); until then the
        records stay spooled, so a crash only sends them again (their ids make that a no-op)
        and a restart resumes the chain after them."""
        stored = self._unacked
        if stored is None:
            return
        assert self._unacked_head is not None
        self._save_head(self._unacked_head)
        self.spool.ack_many([stored])
        self._unacked = self._unacked_head = None
        self._acked_at = time.monotonic()

    @property
    def pending_bytes(self) -> int:
        return self.spool.pending_bytes

    def status(self) -> dict[str, Any]:
        """For health pages: the chain and its head, what waits for the store, the last
        error (redacted; an external drain's, as it saved it)."""
        down, error = self._down, self.errors[-1] if self.errors else None
        if self.external:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                saved = json.loads((self.root / DRAIN_STATUS_FILE).read_text())
                down, error = bool(saved.get("store_down")), saved.get("last_error")
        return {"chain": self.chain, "seq": self._head.seq, "slot": self.slot.name,
                "pending_bytes": self.spool.pending_bytes, "store_down": down,
                "checkpoints": self.signer is not None, "drain": "external" if self.external
                else "inline", "last_error": error}

    def flush(self, timeout: float = 30.0, *, until_failure: bool = False) -> bool:
        """Wait until every record so far is in the store; False at the timeout (or, with
        `until_failure`, as soon as a store write fails)."""
        end = time.monotonic() + timeout
        while self.spool.pending_bytes > 0:
            self._wake.set()
            if self.external:  # another process drains: only watch its cursor
                self.spool.refresh()
                if self.spool.pending_bytes == 0:
                    break
                if time.monotonic() >= end:
                    return False
            elif (time.monotonic() >= end or self._thread is None
                    or (until_failure and self._down) or not self._thread.is_alive()):
                return self.spool.pending_bytes == 0
            time.sleep(0.01)
        if self._link.store is not None:
            with contextlib.suppress(Exception):
                self._link.store.refresh()
        return True

    def close(self, drain_timeout: float = 5.0) -> None:
        """A last checkpoint, up to `drain_timeout` seconds of draining (what remains
        stays on disk for the next process), then release the slot."""
        if self._closed:
            return
        self.checkpoint()
        if self._thread is not None and not self.external:  # the external drain goes on
            self.flush(drain_timeout, until_failure=True)
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.spool.close()
        self._link.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepared_record(doc: dict[str, Any], text: bytes, ms: int | None = None) -> ecs.Prepared:
    """A sealed record as the store takes it (what `ecs.prepare` would make of it, without
    its checks: the trail builds every field itself, and `source.ip` passed `_source`).
    The store then keeps exactly the bytes the chain hashed, key for key. `ms`: the
    record's time, when known (else parsed from `@timestamp`)."""
    event = doc["event"]
    src = doc.get("source")
    return _tuple_new(ecs.Prepared, (
        "audit", event["id"], ecs.to_millis(doc["@timestamp"]) if ms is None else ms, DATASET,
        event.get("kind"),
        None, src.get("ip") if src else None, None, doc.get("message"), text, doc))


_tuple_new = tuple.__new__


def _installed_signer(cfg: Any) -> Signer | None:
    """The checkpoint signer a package above the core registers (entry point group
    `govsoc.audit`, name `signer`: a function of the config returning a signer or None).
    The core cannot import crypto_svc; the registration points the other way."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="govsoc.audit", name="signer"):
        try:
            return ep.load()(cfg)
        except (ImportError, ValueError) as exc:  # the keystore's errors are ValueErrors
            raise ConfigError(f"audit checkpoint signer: {exc}") from exc
    return None


def _url_opener(url: str) -> Callable[[], Any]:
    def connect() -> Any:
        from soc_core.store import open_store

        return open_store(url)

    return connect


def check_retention(cfg: Any) -> int:
    """The configured retention, refused below MIN_RETENTION_DAYS (audit records must be
    kept that long)."""
    days = int(cfg.get("retention_days", MIN_RETENTION_DAYS))
    if days < MIN_RETENTION_DAYS:
        raise ConfigError(f"retention_days = {days}: audit records must be kept at least "
                          f"{MIN_RETENTION_DAYS} days")
    return days


def local_heads(directory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The chain heads the store acknowledged, as saved by the writers in `directory`
    (`<data_dir>/audit`): chain -> {"seq", "hash", "slot"}. `verify(heads=...)` uses them
    to find a tail cut off the store."""
    out: dict[str, dict[str, Any]] = {}
    root = Path(directory)
    if not root.is_dir():
        return out
    for head_file in sorted(root.glob(f"*/{HEAD_FILE}")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            saved = json.loads(head_file.read_text())
            if saved.get("seq"):
                out[saved["chain"]] = {"seq": int(saved["seq"]), "hash": saved["hash"],
                                       "slot": head_file.parent.name}
    return out


# -- verification --------------------------------------------------------------------------
@dataclass
class Problem:
    """One finding: which chain and record, and what is wrong with it."""

    chain: str | None
    seq: int | None
    id: str | None
    what: str

    def __str__(self) -> str:
        where = f"{self.chain} seq {self.seq}" if self.chain else "unchained"
        return f"{where} (id {self.id}): {self.what}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "chains": self.chains,
                "problems": [vars(p) for p in self.problems], "warnings": self.warnings}


@dataclass
class _Entry:
    seq: int
    id: str
    prev: str | None
    prev_time: str | None
    hash: str
    ms: int
    intact: bool
    checkpoint: dict[str, Any] | None


def verify(store: Any, *, start: Any = None, end: Any = None,
           verifier: Verifier | None = None, heads: dict[str, dict[str, Any]] | None = None,
           retention_days: int = MIN_RETENTION_DAYS, page_size: int = 5000) -> Report:
    """Walk every chain of the audit family (within [start, end) when given) in seq order
    and report each record that was edited, removed, inserted or reordered, each checkpoint
    that vouches for something the store no longer holds or whose signature fails, and
    (with `heads` from `local_heads`) a tail cut off after the last record the store
    acknowledged."""
    from soc_core.store import Selection

    report = Report()
    chains: dict[str, list[_Entry]] = {}
    store.refresh()  # what the writers acknowledged (their saved heads) must be visible
    for doc in store.scan(Selection(family="audit", start=start, end=end),
                          page_size=page_size):
        report.records += 1
        eid = doc.get("event", {}).get("id")
        a = doc.get("govsoc", {}).get("audit") if isinstance(doc.get("govsoc"), dict) else None
        if not isinstance(a, dict) or not {"chain", "seq", "hash"} <= a.keys() or \
                type(a["seq"]) is not int:
            report.problems.append(Problem(None, None, eid, "not part of any chain "
                                                            "(inserted?)"))
            continue
        chain, seq = str(a["chain"]), a["seq"]
        intact = record_hash(doc) == a["hash"]
        if not intact:
            report.problems.append(Problem(chain, seq, eid, "edited: the content does not "
                                           "match its SM3 hash"))
        elif eid != f"{chain}.{seq}":
            report.problems.append(Problem(chain, seq, eid, f"stored under another id "
                                           f"(expected {chain}.{seq})"))
        cp = a.get("checkpoint") if doc.get("event", {}).get("action") == CHECKPOINT_ACTION \
            else None
        chains.setdefault(chain, []).append(_Entry(
            seq, eid, a.get("prev"), a.get("prev_time"), a["hash"],
            ecs.to_millis(doc["@timestamp"]), intact, cp if isinstance(cp, dict) else None))
    cutoff = ecs.to_millis(datetime.now(UTC) - timedelta(days=retention_days))
    for chain, entries in sorted(chains.items()):
        _walk(report, chain, entries, windowed=start is not None, cutoff=cutoff,
              verifier=verifier)
    if heads and end is None:
        for chain, head in sorted(heads.items()):
            last = report.chains.get(chain, {}).get("last", 0)
            if last < head["seq"] and (start is None or chain in report.chains):
                report.problems.append(Problem(
                    chain, last + 1, f"{chain}.{last + 1}",
                    f"tail removed: records {last + 1}..{head['seq']} were acknowledged "
                    f"by the store and are gone"))
    if verifier is None and any(c["checkpoints"] for c in report.chains.values()):
        report.warnings.append("checkpoint signatures were not checked (no verifier)")
    return report


def _walk(report: Report, chain: str, entries: list[_Entry], *, windowed: bool,
          cutoff: int, verifier: Verifier | None) -> None:
    entries.sort(key=lambda e: (e.seq, e.id))
    by_seq: dict[int, _Entry] = {}
    summary = {"records": len(entries), "first": entries[0].seq, "last": entries[-1].seq,
               "checkpoints": 0, "last_checkpoint": None, "unsigned_tail": 0}
    report.chains[chain] = summary
    prev: _Entry | None = None
    first = entries[0]
    if not windowed and first.seq != 1:
        if first.prev_time and ecs.to_millis(first.prev_time) < cutoff:
            report.warnings.append(f"{chain}: records before seq {first.seq} are past the "
                                   f"retention period (pruned)")
        else:
            report.problems.append(Problem(chain, first.seq - 1, f"{chain}.{first.seq - 1}",
                                           f"removed: records 1..{first.seq - 1} are missing "
                                           f"and not yet past retention"))
    for e in entries:
        if prev is not None and e.seq == prev.seq:
            report.problems.append(Problem(chain, e.seq, e.id, f"inserted: a second record "
                                           f"with seq {e.seq} (beside {prev.id})"))
            continue
        if prev is not None and e.seq != prev.seq + 1:
            report.problems.append(Problem(chain, prev.seq + 1, f"{chain}.{prev.seq + 1}",
                                           f"removed: records {prev.seq + 1}..{e.seq - 1} "
                                           f"are missing"))
        elif prev is not None and e.prev != prev.hash:
            report.problems.append(Problem(chain, e.seq, e.id, f"does not follow seq "
                                           f"{prev.seq}: its prev hash differs (inserted, "
                                           f"reordered, or seq {prev.seq} rewritten)"))
        elif prev is not None and e.ms < prev.ms:
            report.problems.append(Problem(chain, e.seq, e.id, "reordered: earlier than the "
                                           "record before it"))
        by_seq[e.seq] = e
        prev = e
    for e in entries:
        if e.checkpoint is None:
            continue
        summary["checkpoints"] += 1
        summary["last_checkpoint"] = e.seq
        cp = e.checkpoint
        covered = by_seq.get(cp.get("seq"))  # type: ignore[arg-type]
        if covered is None:
            if not windowed:
                report.problems.append(Problem(chain, cp.get("seq"), f"{chain}.{cp.get('seq')}",
                                               f"removed: checkpoint seq {e.seq} vouches for "
                                               f"it and it is missing"))
        elif covered.hash != cp.get("hash") or not covered.intact:
            report.problems.append(Problem(chain, covered.seq, covered.id,
                                           f"rewritten: checkpoint seq {e.seq} vouches for "
                                           f"another hash"))
        sig = cp.get("signature")
        if not isinstance(sig, dict):
            report.warnings.append(f"{chain}: checkpoint seq {e.seq} is not signed")
        elif verifier is not None:
            try:
                good = verifier(checkpoint_payload(chain, cp.get("seq"), cp.get("hash")), sig)
            except Exception:  # noqa: BLE001 - an unusable signature is a bad one
                good = False
            if not good:
                report.problems.append(Problem(chain, e.seq, e.id, "checkpoint signature "
                                               "does not verify (forged)"))
    last_cp = summary["last_checkpoint"]
    summary["unsigned_tail"] = sum(1 for e in entries if last_cp is None or e.seq > last_cp)
