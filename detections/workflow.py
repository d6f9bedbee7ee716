"""The alert workflow: open -> acknowledged -> closed (with a reason) and reopen, assignment
and notes, each change kept in the alert's history (who, when, from -> to, note).

Every change is a compare-and-set on the stored alert (`EventStore.read_versioned_many`,
`write_many_if`): the state and the history entry are written together, and a writer that
lost the race (another analyst, the detection engine rebuilding the alert) reads again and
redoes its change, so no change and no history entry is ever lost.

A bulk change first writes a journal (its alert ids, the change, a change id per alert) to
the store; each alert's history entry carries that change id, so applying the journal again
skips what was done. `recover(store)` (run when the API starts, and before each bulk)
finishes every journal a crash left behind: no half-applied bulk survives a restart.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from detections.alerts import CLOSE_REASONS, STATUSES, AlertError, iso, now_ms
from soc_core import ecs
from soc_core.store import EventStore, Selection

# from -> the statuses it may move to; closed only reopens
TRANSITIONS = {"open": ("acknowledged", "closed"), "acknowledged": ("open", "closed"),
               "closed": ("open",)}
ACTIONS = ("transition", "assign", "note")
JOURNAL = "govsoc.state.alert_bulk"
MAX_BULK = 10_000
MAX_NOTE = 4000
_CHUNK = 500
_RETRIES = 50
UNSET: Any = object()  # Change.assignee: leave as it is


class AlertNotFound(AlertError):
    """No such alert (or one the caller may not see)."""


class TransitionRefused(AlertError):
    """The change is not possible from the alert's current state."""


@dataclass(frozen=True)
class Change:
    """What to change: a status (with a close reason when closing), an assignee (None or
    "" unassigns; leave unset to keep), a note. Several parts make one atomic write."""

    status: str | None = None
    reason: str | None = None
    assignee: Any = UNSET
    note: str | None = None

    def check(self) -> Change:
        if self.status is not None and self.status not in STATUSES:
            raise AlertError(f"bad status {self.status!r}: one of {', '.join(STATUSES)}")
        if self.reason is not None:
            if self.status != "closed":
                raise AlertError("a close reason goes with status closed")
            if self.reason not in CLOSE_REASONS:
                raise AlertError(f"bad close reason {self.reason!r}: one of "
                                 f"{', '.join(CLOSE_REASONS)}")
        if self.note is not None and len(self.note) > MAX_NOTE:
            raise AlertError(f"note longer than {MAX_NOTE} characters")
        if self.assignee is not UNSET and self.assignee is not None and \
                (not isinstance(self.assignee, str) or len(self.assignee) > 200):
            raise AlertError("assignee: a user name of at most 200 characters")
        if self.status is None and self.assignee is UNSET and not self.note:
            raise AlertError("nothing to change: give a status, an assignee or a note")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.assignee is UNSET:
            del d["assignee"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Change:
        return cls(status=d.get("status"), reason=d.get("reason"),
                   assignee=d.get("assignee", UNSET) if "assignee" in d else UNSET,
                   note=d.get("note"))


def history(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """An alert's history, oldest first."""
    return list(((doc.get("govsoc") or {}).get("alert") or {}).get("history") or [])


def mutate(doc: dict[str, Any], change: Change, *, by: str, change_id: str | None = None,
           at: str | None = None) -> list[dict[str, Any]]:
    """Apply `change` to the alert document in memory; returns the history entries added.
    Raises TransitionRefused when the alert's state does not allow it."""
    al = doc.setdefault("govsoc", {}).setdefault("alert", {})
    at = at or iso(now_ms())
    base = change_id or uuid.uuid4().hex
    entries: list[dict[str, Any]] = []

    def entry(action: str, frm: Any, to: Any, **more: Any) -> None:
        suffix = "" if not entries else f":{len(entries)}"
        entries.append({"id": base + suffix, "at": at, "by": by, "action": action,
                        "from": frm, "to": to, **{k: v for k, v in more.items()
                                                  if v is not None}})

    note = change.note or None
    if change.status is not None:
        old = al.get("status", "open")
        if change.status not in TRANSITIONS.get(old, ()):
            raise TransitionRefused(f"alert {doc['event']['id']} is {old}: it cannot move to "
                                    f"{change.status}")
        reason = (change.reason or "resolved") if change.status == "closed" else None
        al["status"], al["close_reason"] = change.status, reason
        entry("transition", old, change.status, reason=reason, note=note)
        note = None  # said with the transition
    if change.assignee is not UNSET:
        old_a, new_a = al.get("assignee"), change.assignee or None
        if old_a == new_a and not entries and not note:
            raise TransitionRefused(f"alert {doc['event']['id']} is already "
                                    f"{'assigned to ' + new_a if new_a else 'unassigned'}")
        if old_a != new_a:
            al["assignee"] = new_a
            entry("assign", old_a, new_a)
    if note:
        entry("note", None, None, note=note)
    if change.note:
        al.setdefault("notes", []).append({"at": at, "by": by, "text": change.note})
    al.setdefault("history", []).extend(entries)
    if entries:
        al["changed"] = at  # the last analyst change: open consoles follow it (live queue)
    return entries


def apply(store: EventStore, alert_id: str, change: Change, *, by: str,
          visible: Callable[[dict[str, Any]], bool] | None = None,
          refresh: bool = True) -> dict[str, Any]:
    """One change to one alert (compare-and-set, retried on a concurrent write); returns
    the alert as stored."""
    change.check()
    done, skipped = _apply_many(store, [alert_id], change, by=by, visible=visible,
                                refresh=refresh, strict=True)
    return done[alert_id]


def _apply_many(store: EventStore, ids: list[str], change: Change, *, by: str,
                visible: Callable[[dict[str, Any]], bool] | None, refresh: bool,
                strict: bool = False, change_ids: dict[str, str] | None = None,
                at: str | None = None
                ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Apply to each alert; ids already carrying their change id are left as they are.
    Returns (alert id -> stored alert, alert id -> why skipped). strict: raise instead."""
    done: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    pending = list(dict.fromkeys(ids))
    for attempt in range(_RETRIES):
        if not pending:
            break
        current = store.read_versioned_many("alerts", pending)
        writes = []
        for aid in pending:
            got = current.get(aid)
            if got is None or (visible is not None and not visible(got[0])):
                if strict:
                    raise AlertNotFound(f"no alert with id {aid}")
                skipped[aid] = "no such alert"
                continue
            doc, version = got
            cid = (change_ids or {}).get(aid)
            if cid is not None and any(h.get("id", "").split(":")[0] == cid
                                       for h in history(doc)):
                done[aid] = doc  # applied before a crash: not twice
                continue
            try:
                mutate(doc, change, by=by, change_id=cid, at=at)
            except TransitionRefused as exc:
                if strict:
                    raise
                skipped[aid] = str(exc)
                continue
            writes.append((doc, version))
        res = store.write_many_if(writes, refresh=refresh) if writes else None
        if res is not None and res.rejected:
            raise AlertError(f"alert {res.rejected[0].id} not updated: "
                             f"{res.rejected[0].reason}")
        lost = set(res.conflicts) if res is not None else set()
        for doc, _ in writes:
            if doc["event"]["id"] not in lost:
                done[doc["event"]["id"]] = doc
        pending = [a for a in pending if a in lost]
        if pending:  # someone wrote in between: read again, after a short random pause
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    if pending:
        raise AlertError(f"alert {pending[0]} changes too often now; try again")
    return done, skipped


# -- bulk, with a journal ---------------------------------------------------------------
def bulk(store: EventStore, ids: Iterable[str], change: Change, *, by: str,
         visible: Callable[[dict[str, Any]], bool] | None = None,
         progress: Callable[[int, int], None] | None = None, chunk: int = _CHUNK
         ) -> dict[str, Any]:
    """The same change to many alerts, all or (after a crash and `recover`) all the same:
    returns {"id": bulk id, "applied": [ids], "skipped": {id: why}}. `progress(done,
    total)` is called after each `chunk` of alerts."""
    change.check()
    ids = list(dict.fromkeys(ids))
    if len(ids) > MAX_BULK:
        raise AlertError(f"at most {MAX_BULK} alerts in one bulk change; narrow the query")
    recover(store)
    # only alerts the caller may see go into the journal: recovery runs without a caller
    stored = {}
    for i in range(0, len(ids), _CHUNK):
        stored.update(store.read_versioned_many("alerts", ids[i:i + _CHUNK]))
    skipped = {a: "no such alert" for a in ids
               if a not in stored or (visible is not None and not visible(stored[a][0]))}
    targets = [a for a in ids if a not in skipped]
    bid = uuid.uuid4().hex
    journal = {"@timestamp": iso(now_ms()),
               "event": {"kind": "state", "id": bid, "dataset": JOURNAL},
               "govsoc": {"bulk": {"by": by, "ids": targets, "change": change.to_dict(),
                                   "at": iso(now_ms())}}}
    res = store.write([journal], refresh=True)
    if res.rejected:
        raise AlertError(f"bulk change not started: {res.rejected[0].reason}")
    applied, more = _run_journal(store, journal, progress=progress, chunk=chunk)
    skipped.update(more)
    return {"id": bid, "applied": applied, "skipped": skipped}


def _run_journal(store: EventStore, journal: dict[str, Any],
                 progress: Callable[[int, int], None] | None = None, chunk: int = _CHUNK
                 ) -> tuple[list[str], dict[str, str]]:
    b = journal["govsoc"]["bulk"]
    bid = journal["event"]["id"]
    change = Change.from_dict(b["change"])
    targets: list[str] = b["ids"]
    # one change id per alert, derived from the bulk's: a second run recognises its work
    cids = {a: ecs.stable_id("bulk", bid, a) for a in targets}
    applied: list[str] = []
    skipped: dict[str, str] = {}
    for i in range(0, len(targets), chunk):
        part = targets[i:i + chunk]
        done, why = _apply_many(store, part, change, by=b["by"], visible=None,
                                refresh=False, change_ids=cids, at=b["at"])
        applied += [a for a in part if a in done]
        skipped.update(why)
        if progress is not None:
            progress(min(i + chunk, len(targets)), len(targets))
    store.refresh()
    store.delete("state", [bid])  # finished: nothing left to recover
    return applied, skipped


def recover(store: EventStore) -> int:
    """Finish every bulk change a crash interrupted; returns how many there were."""
    store.refresh()
    journals = list(store.scan(Selection(family="state", dataset=JOURNAL)))
    for journal in journals:
        _run_journal(store, journal)
    return len(journals)


def resolve_query(store: EventStore, sel: Selection, limit: int = MAX_BULK) -> list[str]:
    """The ids of the alerts a selection (already scoped to the caller) matches."""
    out = []
    for doc in store.scan(Selection(family="alerts", start=sel.start, end=sel.end,
                                    filters=sel.filters, query=sel.query),
                          page_size=1000, descending=True):
        out.append(doc["event"]["id"])
        if len(out) > limit:
            raise AlertError(f"the query matches more than {limit} alerts; narrow it")
    return out
