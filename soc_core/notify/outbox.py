"""The durable notification queue: a SQLite file (`notify.outbox`, default
`<data_dir>/notify/outbox.db`, WAL, synchronous FULL) of messages and one delivery row per
(message, channel).

Why local SQLite and not the event store: a notification is this machine's outgoing mail,
not shared state; the queue must take a message while the store is down (that is when
people most need to hear), and its claims need row locks the store does not offer.

Guarantees:
- a message id is queued once (`enqueue` ignores an id it has seen, including one recorded
  as seen without deliveries), so a watcher reading the same alert again adds nothing;
- a delivery is committed `sending` with a lease before the request goes out and `sent`
  after the receiver acknowledged it. A restart resends only a delivery whose process died
  between those two commits (its lease runs out): at-least-once, with the crash window
  of one request as the only way to see a message twice. A message is never lost: a
  pending or leased delivery survives any restart, and `failed` is only set after
  `max_attempts` or a refusal no retry can fix (bad signature, bad key).
- claims are atomic (BEGIN IMMEDIATE), so two senders on one outbox never send one
  delivery twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from soc_core.notify.channels import Channel, Message
from soc_core.store.sqlite import set_pragmas

__all__ = ["Claim", "Outbox", "outbox_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, level TEXT NOT NULL, title TEXT NOT NULL,
  text TEXT NOT NULL, departments TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
  message_id TEXT NOT NULL, channel TEXT NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL, lease_ms INTEGER,
  last_error TEXT, done_ms INTEGER, PRIMARY KEY (message_id, channel));
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (channel, state, next_ms);
CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
STATES = ("pending", "sending", "sent", "failed")


def outbox_path(cfg: Any) -> Path:
    return Path(cfg.get("notify.outbox") or Path(cfg.data_dir) / "notify" / "outbox.db")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Claim:
    """A delivery this sender holds (leased) until it reports `sent`, `retry` or `failed`."""

    def __init__(self, message: Message, channel: str, attempts: int) -> None:
        self.message, self.channel, self.attempts = message, channel, attempts


class Outbox:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._lock = threading.Lock()
        self.kick = threading.Event()  # set on enqueue: senders in this process wake up
        set_pragmas(self._db, ("journal_mode=WAL", "synchronous=FULL"), 30)
        self._tx(self._create)

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        """The tables, and the column an outbox made before e-mail attachments lacks: in
        one write transaction, since the service and a sender may open a new file at once."""
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        if "mail" not in {r[1] for r in db.execute("PRAGMA table_info(messages)")}:
            db.execute("ALTER TABLE messages ADD COLUMN mail TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, fn: Any) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    # -- producers -----------------------------------------------------------------
    def enqueue(self, msg: Message, channels: list[Channel] | Any) -> bool:
        """Queue `msg` for each channel that wants it; False (nothing added) when the id
        was queued before. With no channels the id is only recorded as seen."""
        names = [c.name for c in channels if c.wants(msg)]

        def do(db: sqlite3.Connection) -> bool:
            mail = orjson.dumps({"attachments": list(msg.attachments),
                                 "recipients": list(msg.recipients)}).decode() \
                if msg.attachments or msg.recipients else ""
            cur = db.execute(
                "INSERT OR IGNORE INTO messages (id, kind, level, title, text, departments, "
                "created_ms, mail) VALUES (?,?,?,?,?,?,?,?)",
                (msg.id, msg.kind, msg.level, msg.title, msg.text,
                 ",".join(msg.departments), msg.created_ms, mail))
            if cur.rowcount == 0:
                return False
            db.executemany("INSERT OR IGNORE INTO deliveries (message_id, channel, state, "
                           "next_ms) VALUES (?,?,'pending',0)", [(msg.id, n) for n in names])
            return True

        new = self._tx(do)
        if new and names:
            self.kick.set()
        return new

    def seen(self, msg_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM messages WHERE id=?",
                                    (msg_id,)).fetchone() is not None

    # -- senders -------------------------------------------------------------------
    def claim(self, channel: str, lease_s: float = 120.0, now_ms: int | None = None
              ) -> Claim | None:
        """The oldest due delivery of `channel` (pending and due, or leased by a sender that
        died), leased to the caller."""
        now = _now_ms() if now_ms is None else now_ms

        def do(db: sqlite3.Connection) -> Claim | None:
            row = db.execute(
                "SELECT d.message_id, d.attempts, m.kind, m.level, m.title, m.text, "
                "m.departments, m.created_ms, m.mail FROM deliveries d JOIN messages m "
                "ON m.id = d.message_id WHERE d.channel=? AND ((d.state='pending' AND "
                "d.next_ms<=?) OR (d.state='sending' AND d.lease_ms<=?)) "
                "ORDER BY d.next_ms, m.created_ms LIMIT 1", (channel, now, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE deliveries SET state='sending', lease_ms=? WHERE "
                       "message_id=? AND channel=?", (now + int(lease_s * 1000), row[0],
                                                      channel))
            mail = orjson.loads(row[8]) if row[8] else {}
            msg = Message(id=row[0], kind=row[2], level=row[3], title=row[4], text=row[5],
                          departments=tuple(d for d in row[6].split(",") if d),
                          created_ms=row[7],
                          attachments=tuple(mail.get("attachments") or ()),
                          recipients=tuple(mail.get("recipients") or ()))
            return Claim(msg, channel, row[1])

        return self._tx(do)

    def sent(self, claim: Claim) -> None:
        self._finish(claim, "sent", None, None)

    def failed(self, claim: Claim, error: str) -> None:
        self._finish(claim, "failed", error, None)

    def retry(self, claim: Claim, error: str, next_ms: int) -> None:
        self._finish(claim, "pending", error, next_ms)

    def _finish(self, claim: Claim, state: str, error: str | None, next_ms: int | None
                ) -> None:
        now = _now_ms()
        attempts = claim.attempts + 1
        self._tx(lambda db: db.execute(
            "UPDATE deliveries SET state=?, attempts=?, last_error=?, lease_ms=NULL, "
            "next_ms=COALESCE(?, next_ms), done_ms=? WHERE message_id=? AND channel=?",
            (state, attempts, error, next_ms, now if state in ("sent", "failed") else None,
             claim.message.id, claim.channel)))

    def next_due_ms(self, channel: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(CASE state WHEN 'pending' THEN next_ms ELSE lease_ms END) FROM "
                "deliveries WHERE channel=? AND state IN ('pending','sending')",
                (channel,)).fetchone()
        return row[0] if row else None

    # -- status --------------------------------------------------------------------
    def stats(self, channel: str) -> dict[str, Any]:
        """Deliveries by state, the last success and the last error (already scrubbed)."""
        with self._lock:
            counts = dict(self._db.execute(
                "SELECT state, COUNT(*) FROM deliveries WHERE channel=? GROUP BY state",
                (channel,)).fetchall())
            last_sent = self._db.execute(
                "SELECT MAX(done_ms) FROM deliveries WHERE channel=? AND state='sent'",
                (channel,)).fetchone()[0]
            err = self._db.execute(
                "SELECT last_error FROM deliveries WHERE channel=? AND last_error IS NOT NULL "
                "ORDER BY COALESCE(done_ms, next_ms) DESC LIMIT 1", (channel,)).fetchone()
        return {"deliveries": {s: counts.get(s, 0) for s in STATES},
                "last_sent_ms": last_sent, "last_error": err[0] if err else None}

    def deliveries(self, channel: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT message_id, channel, state, attempts, last_error FROM deliveries"
        args: tuple = ()
        if channel:
            sql, args = sql + " WHERE channel=?", (channel,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY rowid", args).fetchall()
        return [dict(zip(("message_id", "channel", "state", "attempts", "last_error"), r,
                         strict=True)) for r in rows]

    def mark(self, key: str, value: str | None = None) -> str | None:
        """Read a mark, or set it when `value` is given (the watcher's bookkeeping)."""
        if value is None:
            with self._lock:
                row = self._db.execute("SELECT value FROM marks WHERE key=?",
                                       (key,)).fetchone()
            return row[0] if row else None
        self._tx(lambda db: db.execute("INSERT OR REPLACE INTO marks VALUES (?,?)",
                                       (key, value)))
        return value

    def prune(self, older_than_days: float = 30) -> int:
        """Forget finished messages older than that (pending ones are kept)."""
        cut = _now_ms() - int(older_than_days * 86_400_000)

        def do(db: sqlite3.Connection) -> int:
            old = "SELECT id FROM messages WHERE created_ms<? AND id NOT IN (SELECT " \
                  "message_id FROM deliveries WHERE state IN ('pending','sending'))"
            db.execute(f"DELETE FROM deliveries WHERE message_id IN ({old})", (cut,))
            return db.execute(f"DELETE FROM messages WHERE id IN ({old})", (cut,)).rowcount

        return self._tx(do)
