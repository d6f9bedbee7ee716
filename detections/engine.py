"""The detection engine: runs each rule over `[checkpoint - lookback, now - delay]`, turns
matches into alerts, and persists checkpoints and rule health.

Exactly once: every pass re-reads whole suppression buckets (the window start is aligned
down to a bucket boundary) and recomputes each touched alert from all its matches, so an
overlapping window, a restart or a crash between writing alerts and saving the checkpoint
rewrites the same alert with the same count instead of adding to it. Gaps (the engine was
down longer than a few intervals) are recorded in rule health and backfilled, because the
next window always starts at the last checkpoint.

Evidence stored later lies outside the windows: `run_once(backfill=True)` finds it and
examines it, up to `Settings.backfill_max_events` stored events (past that it covers nothing
extra, and the summary says how many events wait and the `--since` that covers them):
- older than anything a rule examined (a capture or an EVTX log from last year): from the
  oldest stored event of the rule's datasets to the earliest time it examined (the state's
  `examined`);
- inside time already examined (last week's logs imported while `govsoc up` ran): the days
  whose stored count grew past what was examined there (`detections.coverage`) are run again.
"""

from __future__ import annotations

import bisect
import fnmatch
import heapq
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detections import alerts as al
from detections import coverage
from detections.alerts import now_ms
from detections.correlation import Base, Match, evaluate, key_getter
from detections.rules import Rule, RulePack, load_pack
from detections.state import DetectionState
from soc_core import ecs
from soc_core.gcpause import cyclic_gc_paused
from soc_core.store import EventStore, Selection, StoreError, parse_duration, resolve_millis

DEFAULT_GROUP = ("host.name", "source.ip", "destination.ip", "user.name")
HEALTH_GAPS = 20  # gaps remembered per rule


class LeaseLost(RuntimeError):
    """The engine's lease on its rule set ended during a pass (another engine leads)."""


class TooNoisy(ValueError):
    """More matches in one window than the engine holds at once."""


@dataclass
class Settings:
    interval_s: float = 30.0  # scheduler period
    delay_ms: int = 5_000  # events may arrive this late
    lookback_ms: int = 60_000  # overlap with the previous window
    initial_ms: int = 7 * 86_400_000  # first run of a rule looks back this far
    suppress_ms: int = 3_600_000  # matches of one rule+group in this bucket -> one alert
    max_matches: int = 200_000  # per rule and slice; beyond that the rule is flagged noisy
    slice_ms: int = 3_600_000  # long windows (first run, backfill) are run in slices
    # Unexamined events one backfilling pass covers at most. Every rule reading their
    # datasets reads them: measured on SQLite, 200,000 flows and SSH logins spread over 11
    # years took 65-78 s with our pack (476,304 matches, 72,568 alerts; 2-core shared box),
    # so the bound is a pass of minutes (~6), not hours: days of imported evidence are
    # covered, a decade of a busy store is refused with the figures and a --since instead.
    backfill_max_events: int = 1_000_000
    page: int | None = None  # None: 50,000 on SQLite (fewer keyset re-walks), 10,000 on ES


@dataclass
class RunSummary:
    rules: int = 0
    matches: int = 0
    new_alerts: int = 0
    updated_alerts: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    snoozed: int = 0
    events_scanned: int | None = None
    # stored events older than anything examined: span, count, and whether this pass
    # covered them (False: over Settings.backfill_max_events)
    unexamined: Backlog | None = None

    def line(self) -> str:
        return (f"{self.rules} rules, {self.matches} matches, {self.new_alerts} new alerts, "
                f"{self.updated_alerts} updated, {self.snoozed} snoozed, "
                f"{len(self.errors)} errors")


def to_ms(value: Any) -> int:
    return resolve_millis(value)


@dataclass
class Backlog:
    start: int  # ms of the oldest unexamined event
    end: int  # ms: where examined time begins (the latest of the rules concerned)
    events: int
    covered: bool

    def line(self) -> str:
        span = f"from {al.iso(self.start)} to {al.iso(self.end)}"
        if self.covered:
            return (f"examined {self.events} stored events {span} that no pass had "
                    "examined (stored after their time was examined, or older)")
        return (f"warning: {self.events} stored events {span} lie outside the detection "
                f"window and were not examined (over the bound of one pass); cover them "
                f"with: govsoc detect run --once --since {al.iso(self.start)}")


class Engine:
    def __init__(self, store: EventStore, pack: RulePack | None = None, *,
                 settings: Settings | None = None, state: DetectionState | None = None
                 ) -> None:
        self.store = store
        # where alerts are read and written (compare-and-set): the store, unless a hunt
        # keeps them in memory (detections.memory.AlertTable)
        self.alert_store: Any = store
        self.pack = pack or load_pack(backends=[self.backend_of(store)])
        self.settings = settings or Settings()
        self.state = state or DetectionState.for_store(store)
        # leader election (detections.leader): False from `fence` stops a pass unsaved
        self.fence: Callable[[], bool] | None = None
        self.name = ""  # who ran the pass, recorded in rule health
        self._analyzed = 0.0
        # per pass: what each query rule reads (see _plan) and the matches read so far
        self._spans: dict[str, tuple[int, int]] = {}
        self._cache: dict[tuple, list[dict[str, Any]]] = {}
        self._extra: dict[str, list[tuple[int, int]]] = {}  # rule id -> unexamined spans
        self._regrown: dict[str, dict[str, int]] = {}  # group -> days examined again
        self._read_by: dict[str, tuple[str, ...] | None] = {}  # rule id -> its datasets

    @staticmethod
    def backend_of(store: EventStore) -> str:
        return "sqlite" if store.backend == "sqlite" else "elasticsearch"

    @property
    def backend(self) -> str:
        return self.backend_of(self.store)

    # -- one pass ------------------------------------------------------------------
    def run_once(self, now: Any = None, since: Any = None, backfill: bool = False
                 ) -> RunSummary:
        """Run every applicable rule once over its window; returns what happened. With
        `backfill`, also over stored events older than any the rule examined (bounded)."""
        now = now_ms() if now is None else to_ms(now)
        since_ms = None if since is None else to_ms(since)
        summary = RunSummary()
        state = self.state.load()
        self.store.refresh()
        if time.monotonic() - self._analyzed > 3600:
            self.store.optimize()
            self._analyzed = time.monotonic()
        # only rules that alert run; building blocks only feed correlations
        rules = [r for r in self.pack.runnable(self.backend) if r.is_correlation or r.generate]
        self._cache = {}
        self._extra, self._regrown = {}, {}
        groups = {coverage.group_key(self._datasets(r)): self._datasets(r) for r in rules}
        closed_to = now - self.settings.delay_ms - self.settings.lookback_ms
        if backfill:
            summary.unexamined = self._find_unexamined(rules, state, now, since_ms, groups,
                                                       closed_to)
        # counted before any rule reads it: what this pass closes (detections.coverage)
        closed = coverage.closing(self.store, state["coverage"], groups,
                                  self._starts(rules, state, now, since_ms), closed_to)
        self._spans = self._plan(rules, state, now, since_ms)
        updates: dict[str, dict[str, Any]] = {}
        try:
            # the pass's matches are trees, freed by reference counting (soc_core.gcpause)
            with cyclic_gc_paused():
                for rule in rules:
                    self._check_fence()
                    summary.rules += 1
                    updates[rule.id] = self._run_rule(rule, state, now, since_ms, summary)
        finally:
            self._cache = {}  # the pass's matches: free them now, not at the next pass
        failed = {coverage.group_key(self._datasets(r)) for r in rules if updates[r.id]["error"]}
        self._save(updates, closed, failed)
        if summary.new_alerts or summary.updated_alerts:
            self.store.refresh()
        return summary

    def _window(self, rule: Rule, state: dict[str, Any], now: int, since: int | None
                ) -> tuple[int, int, dict[str, int] | None]:
        s = self.settings
        end = now - s.delay_ms
        cp = state["checkpoints"].get(rule.id)
        gap = None
        if cp is None:
            start = end - s.initial_ms
        else:
            start = cp - s.lookback_ms
            if end - cp > max(3 * s.interval_s * 1000, s.lookback_ms) + s.delay_ms:
                gap = {"start": al.iso(cp), "end": al.iso(end), "backfilled": True}
        if since is not None:
            start = min(start, since)
        return start, end, gap

    def _examined_from(self, rule: Rule, state: dict[str, Any], now: int) -> int:
        """The earliest time `rule` has examined (or will, this pass, without backfill)."""
        known = state["examined"].get(rule.id)
        if known is not None:
            return known
        cp = state["checkpoints"].get(rule.id)
        # state from before `examined` was kept: a first pass covered initial_ms before
        # some checkpoint at least as old as this one (re-examining is harmless: idempotent)
        return (cp if cp is not None else now - self.settings.delay_ms) - self.settings.initial_ms

    def _datasets(self, rule: Rule) -> tuple[str, ...] | None:
        """The datasets `rule` reads (its bases' for a correlation); None: every dataset."""
        if rule.id not in self._read_by:
            rules = self.pack.bases(rule) if rule.is_correlation else [rule]
            self._read_by[rule.id] = (None if any(not r.datasets for r in rules) else
                                      tuple(sorted({d for r in rules for d in r.datasets or ()})))
        return self._read_by[rule.id]

    def _oldest(self, datasets: tuple[str, ...] | None, before: int | None = None,
                after: int | None = None) -> int | None:
        """Time of the oldest stored event of `datasets` in [after, before), or None."""
        sel = Selection(family="events", dataset=list(datasets) if datasets else None,
                        start=None if after is None else al.iso(after),
                        end=None if before is None else al.iso(before))
        hits = self.store.search(sel, size=1).hits
        return ecs.to_millis(hits[0]["@timestamp"]) if hits else None

    def _starts(self, rules: list[Rule], state: dict[str, Any], now: int, since: int | None
                ) -> dict[str, int]:
        """Per dataset group, the earliest window start of its rules this pass."""
        starts: dict[str, int] = {}
        for rule in rules:
            key = coverage.group_key(self._datasets(rule))
            start = self._window(rule, state, now, since)[0]
            starts[key] = min(starts.get(key, start), start)
        return starts

    def _find_unexamined(self, rules: list[Rule], state: dict[str, Any], now: int,
                         since: int | None, groups: dict[str, Any], closed_to: int
                         ) -> Backlog | None:
        """Stored events no pass examined: per rule, older than what it examined, and per
        dataset group, on days that grew since they were examined. When all together they
        are within the bound, they become extra spans the rules run this pass."""
        found: dict[str, int] = {}
        lows: dict[str, int] = {}
        seen: dict[tuple, int | None] = {}
        for rule in rules:
            low = self._examined_from(rule, state, now)
            if since is not None:
                low = min(low, since)  # --since covers that much anyway
            key = (self._datasets(rule), low)
            if key not in seen:
                seen[key] = self._oldest(key[0], before=low)
            if seen[key] is not None:
                found[rule.id], lows[rule.id] = seen[key], low
        count, bounds = 0, []
        if found:
            start, end = min(found.values()), max(lows.values())
            datasets = {d for r in rules if r.id in found for d in (self._datasets(r) or ())}
            every = any(self._datasets(r) is None for r in rules if r.id in found)
            count = self.store.count(Selection(
                family="events", dataset=None if every else sorted(datasets),
                start=al.iso(start), end=al.iso(end)))
            bounds = [start, end]
        grown = coverage.grown(self.store, state["coverage"], groups)
        extra: dict[str, list[tuple[int, int]]] = {
            rid: [(oldest, lows[rid])] for rid, oldest in found.items()}
        for rule in rules:
            key = coverage.group_key(self._datasets(rule))
            if key in grown:  # from its examined time on: the older span has the rest
                runs = coverage.spans(grown[key], lows.get(rule.id, self._examined_from(
                    rule, state, now)), state["coverage"][key]["to"])
                if runs:
                    extra.setdefault(rule.id, []).extend(runs)
                    bounds += [runs[0][0], runs[-1][1]]
        for key, days in grown.items():
            lowest = min(self._examined_from(r, state, now) for r in rules
                          if coverage.group_key(self._datasets(r)) == key)
            count += sum(n for d, n in days.items() if int(d) + coverage.DAY_MS > lowest)
        if not bounds:
            return None
        covered = count <= self.settings.backfill_max_events
        if covered:
            self._extra = extra
            self._regrown = self._older_days(rules, state, groups, found, lows, closed_to)
            for key, days in grown.items():
                self._regrown.setdefault(key, {}).update(days)
        return Backlog(min(bounds), max(bounds), count, covered)

    def _older_days(self, rules: list[Rule], state: dict[str, Any], groups: dict[str, Any],
                    found: dict[str, int], lows: dict[str, int], closed_to: int
                    ) -> dict[str, dict[str, int]]:
        """Whole-day counts of the days the older spans examine (the last one up to what is
        recorded or closed), to be recorded as examined."""
        out: dict[str, dict[str, int]] = {}
        for key, datasets in groups.items():
            ids = [r.id for r in rules
                   if r.id in found and coverage.group_key(self._datasets(r)) == key]
            if ids:
                rec = state["coverage"].get(key)
                lo = min(found[i] for i in ids)
                hi = max(lows[i] for i in ids)
                out[key] = coverage.day_counts(
                    self.store, datasets, lo - lo % coverage.DAY_MS,
                    min(hi - hi % coverage.DAY_MS + coverage.DAY_MS,
                        rec["to"] if rec else closed_to))
        return out

    def _ranges(self, rule: Rule, start: int, end: int) -> list[tuple[Rule, int, int]]:
        """What running `rule` over [start, end) reads: (rule with a query, from, to).
        A single-event rule re-reads its first suppression bucket whole; a correlation
        reads its base rules from one timespan before its first bucket (a sliding window
        ending in that bucket may start there)."""
        if not rule.is_correlation:
            bucket_ms = self._bucket_ms(rule)
            return [(rule, start - start % bucket_ms, end)]
        bucket_ms = self._corr_bucket_ms(rule)
        qstart = start - start % bucket_ms - int(rule.sigma.timespan.seconds * 1000)
        return [(base, qstart, end) for base in self.pack.bases(rule)]

    def _plan(self, rules: list[Rule], state: dict[str, Any], now: int, since: int | None
              ) -> dict[str, tuple[int, int]]:
        """Per query rule, the span covering every read of it this pass. A base rule that
        alerts itself and feeds correlations (or feeds several, with other timespans) is
        then queried once and the narrower reads are cut from that result."""
        spans: dict[str, tuple[int, int]] = {}
        for rule in rules:
            if self._paused(rule, state, now):
                continue
            start, end, _ = self._window(rule, state, now, since)
            if end <= start:
                continue
            for base, lo, hi in self._ranges(rule, start, end):
                old = spans.get(base.id)
                spans[base.id] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        return spans

    @staticmethod
    def _paused(rule: Rule, state: dict[str, Any], now: int) -> str | bool | None:
        """True: switched off; the snooze's end: snoozed; None: runs."""
        if rule.id in state["disabled"]:
            return True
        snooze = state["snoozes"].get(rule.id)
        if snooze and to_ms(snooze["until"]) > now:
            return snooze["until"]
        return None

    def _run_rule(self, rule: Rule, state: dict[str, Any], now: int, since: int | None,
                  summary: RunSummary) -> dict[str, Any]:
        t0 = time.perf_counter()
        start, end, gap = self._window(rule, state, now, since)
        upd: dict[str, Any] = {"checkpoint": end, "gap": gap, "matches": 0, "alerts": 0,
                               "error": None, "snoozed": None, "disabled": False,
                               "examined": min([start, self._examined_from(rule, state, now)]
                                               + [lo for lo, _ in self._extra.get(rule.id, ())])}
        paused = self._paused(rule, state, now)
        if paused:
            # snoozed or switched off: the window is consumed without alerting (that is
            # what both mean; switching a rule back on does not replay what it missed)
            upd["snoozed"] = None if paused is True else paused
            upd["disabled"] = paused is True
            summary.snoozed += paused is not True
        elif end > start:
            run = self._correlate if rule.is_correlation else self._single

            def tally(counts: tuple[int, int, int]) -> None:
                n_match, n_new, n_upd = counts
                upd["matches"] += n_match
                upd["alerts"] += n_new + n_upd
                summary.matches += n_match
                summary.new_alerts += n_new
                summary.updated_alerts += n_upd

            reached = [start]
            try:
                self._sliced(run, rule, state, start, end, tally, reached)
                for lo, hi in self._extra.get(rule.id, ()):  # days that grew: again
                    self._sliced(run, rule, state, lo, hi, tally, [lo])
            except (StoreError, ValueError, sqlite3.Error) as exc:
                # the checkpoint stays where the failed slice began: retried next pass
                old = state["checkpoints"].get(rule.id)
                upd["checkpoint"] = reached[0] if reached[0] > start else old
                upd["error"] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                summary.errors[rule.id] = upd["error"]
                upd["examined"] = None
        upd["duration_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return upd

    def _sliced(self, run: Any, rule: Rule, state: dict[str, Any], start: int, end: int,
                tally: Any, reached: list[int]) -> None:
        """Run `rule` over [start, end): at once, or, with too many matches at once (a first
        run, a long backfill), slice by slice. Slices end on bucket boundaries, so each
        alert bucket is still computed whole; `reached[0]` is where the next slice begins."""
        try:
            tally(run(rule, state, start, end))
            return
        except TooNoisy:
            pass
        step = self._slice_ms(rule)
        datasets = self._datasets(rule)
        lo = start
        while lo < end:
            hi = min(end, (lo // step + 1) * step)
            tally(run(rule, state, lo, hi))
            # skip slices without events (a backfill over years of mostly nothing): on to
            # the slice of the next stored event
            nxt = self._oldest(datasets, before=end, after=hi)
            lo = reached[0] = end if nxt is None else max(hi, nxt - nxt % step)

    # -- fetching ------------------------------------------------------------------
    def _native(self, rule: Rule) -> Any:
        q = rule.queries[self.backend]
        if self.backend == "elasticsearch":
            return {"query_string": {"query": q, "default_field": "message", "lenient": True}}
        return q

    def fetch(self, rule: Rule, start: int, end: int) -> list[dict[str, Any]]:
        """Every event matching a base rule in [start, end), oldest first (by time, then
        event id: the stores' order)."""
        span = self._spans.get(rule.id)
        if span and span[0] <= start and end <= span[1]:
            try:
                docs = self._fetch(rule, *span)
            except TooNoisy:
                del self._spans[rule.id]  # too much at once: from now on read what is asked
                if span == (start, end):
                    raise
            else:
                if span == (start, end):
                    return docs
                # the docs are in time order: cut [start, end) out by bisection
                lo = bisect.bisect_left(docs, start, key=_doc_ts)
                hi = bisect.bisect_left(docs, end, lo=lo, key=_doc_ts)
                return docs[lo:hi]
        return self._fetch(rule, start, end)

    def _fetch(self, rule: Rule, start: int, end: int) -> list[dict[str, Any]]:
        key = (rule.id, start, end)
        cache = self._cache
        if key in cache:
            return cache[key]
        datasets = list(rule.datasets or [])
        if len(datasets) > 1 and self.backend == "sqlite":
            # one query per dataset: with `dataset = ?` SQLite walks the dataset index in
            # the (ts, id) order paging needs; with `dataset IN (...)` it prefers the time
            # index and reads every event of the range. Merging keeps the store's order.
            runs = [self._pages(rule, d, start, end) for d in datasets]
            runs = [r for r in runs if r]
            out = (runs[0] if len(runs) == 1
                   else list(heapq.merge(*runs, key=_doc_order)) if runs else [])
            self._check_noise(out)
        else:
            out = self._pages(rule, datasets or None, start, end)
        cache[key] = out
        return out

    def _pages(self, rule: Rule, datasets: Any, start: int, end: int
               ) -> list[dict[str, Any]]:
        sel = Selection(family="events", dataset=datasets, start=al.iso(start),
                        end=al.iso(end))
        out: list[dict[str, Any]] = []
        cursor = None
        native = self._native(rule)
        size = self.settings.page or (50_000 if self.backend == "sqlite" else 10_000)
        while True:
            page = self.store.native(native, sel, size=size, after=cursor)
            out.extend(page.hits)
            self._check_noise(out)
            if page.cursor is None:
                break
            cursor = page.cursor
        return out

    def _check_noise(self, docs: list[dict[str, Any]]) -> None:
        if len(docs) > self.settings.max_matches:
            raise TooNoisy(f"more than {self.settings.max_matches} matches in one "
                           f"window: the rule is too noisy, tune it or add an exception")

    def _exceptions(self, rule: Rule, state: dict[str, Any],
                    docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        excs = state["exceptions"].get(rule.id) or []
        if not excs:
            return docs
        return [d for d in docs if not any(exception_matches(x, d) for x in excs)]

    # -- single-event rules --------------------------------------------------------
    def _bucket_ms(self, rule: Rule) -> int:
        spec = rule.options.get("suppress")
        if spec:
            return int(parse_duration(str(spec)).total_seconds() * 1000)
        return self.settings.suppress_ms

    def _corr_bucket_ms(self, rule: Rule) -> int:
        """A correlation's alert bucket is never shorter than its timespan."""
        return max(self._bucket_ms(rule), int(rule.sigma.timespan.seconds * 1000))

    def _slice_ms(self, rule: Rule) -> int:
        bucket = self._corr_bucket_ms(rule) if rule.is_correlation else self._bucket_ms(rule)
        return max(1, -(-self.settings.slice_ms // bucket)) * bucket

    def _group_fields(self, rule: Rule) -> list[str]:
        if rule.is_correlation:
            return list(rule.sigma.group_by or [])
        fields = rule.options.get("group_by")
        return list(fields) if fields else list(DEFAULT_GROUP)

    def _single(self, rule: Rule, state: dict[str, Any], start: int, end: int
                ) -> tuple[int, int, int]:
        bucket_ms = self._bucket_ms(rule)
        [(_, qstart, _)] = self._ranges(rule, start, end)
        docs = self._exceptions(rule, state, self.fetch(rule, qstart, end))
        fields = self._group_fields(rule)
        key_of = key_getter(fields)
        groups: dict[tuple[tuple, int], list[dict[str, Any]]] = {}
        for d in docs:
            bucket = ecs.to_millis(d["@timestamp"]) // bucket_ms
            groups.setdefault((key_of(d), bucket), []).append(d)
        new, upd = self._emit(rule, fields, groups, bucket_ms)
        return len(docs), new, upd

    # -- correlation rules ---------------------------------------------------------
    def _correlate(self, rule: Rule, state: dict[str, Any], start: int, end: int
                   ) -> tuple[int, int, int]:
        corr = rule.sigma
        bucket_ms = self._corr_bucket_ms(rule)
        first_bucket = start // bucket_ms
        bases = [Base(base.id, base.sigma.name,
                      self._exceptions(rule, state, self.fetch(base, qstart, qend)))
                 for base, qstart, qend in self._ranges(rule, start, end)]
        names = {b.sigma.name: b.id for b in self.pack.bases(rule) if b.sigma.name}
        mins = {names.get(k, k): int(v) for k, v in (rule.options.get("min_count") or {}).items()}
        fields = self._group_fields(rule)
        stored: dict[tuple[tuple, int], bool] = {}

        def alerted(key: tuple, bucket: int) -> bool:
            # asked only for a window across a bucket boundary: one read per group and bucket
            if (key, bucket) not in stored:
                aid = al.alert_id(rule.id, _group_items(fields, key), bucket)
                stored[key, bucket] = bool(
                    self.alert_store.read_versioned_many("alerts", [aid]))
            return stored[key, bucket]

        found = evaluate(corr, bases, bucket_ms, min_counts=mins, alerted=alerted)
        beacon = rule.options.get("beacon")
        if beacon:
            limit = float(beacon.get("max_jitter", 0.15))
            found = {k: ms for k, ms in found.items() if regular(ms, limit)}
        # a bucket before the first is only partly read: it is updated only where a window
        # across its end joined its stored alert
        groups = {(key, b): [m.doc for m in ms] for (key, b), ms in found.items()
                  if b >= first_bucket or stored.get((key, b))}
        new, upd = self._emit(rule, fields, groups, bucket_ms)
        return sum(len(b.docs) for b in bases), new, upd

    # -- writing alerts ------------------------------------------------------------
    def _emit(self, rule: Rule, fields: list[str],
              groups: dict[tuple[tuple, int], list[dict[str, Any]]], bucket_ms: int
              ) -> tuple[int, int]:
        new, upd = 0, 0
        if not groups:  # nothing matched: no alert to read or write
            return new, upd
        planned = []
        for (key, bucket), events in groups.items():
            group = dict(_group_items(fields, key))
            planned.append((al.alert_id(rule.id, tuple(group.items()), bucket), group, bucket,
                            events))
        part = al.rule_part(rule)  # the same in each of the rule's alerts
        # compare-and-set against what was read: an analyst's change made through the API
        # meanwhile is never overwritten; that alert is read again and rebuilt on top of it
        for _ in range(50):
            known = self.alert_store.read_versioned_many("alerts", [p[0] for p in planned])
            docs, counts = [], {}
            for aid, group, bucket, events in planned:
                events.sort(key=_event_order)
                existing, version = known.get(aid, (None, None))
                doc = al.build(rule, group, bucket, bucket_ms, events, existing, aid=aid,
                               part=part)
                if al.changed(doc, existing):
                    docs.append((doc, version))
                    counts[aid] = existing is None
            res = self.alert_store.write_many_if(docs) if docs else None
            if res is not None and res.rejected:
                raise ValueError(f"alert rejected by the store: {res.rejected[0].reason}")
            lost = set(res.conflicts) if res is not None else set()
            new += sum(1 for aid, fresh in counts.items() if fresh and aid not in lost)
            upd += sum(1 for aid, fresh in counts.items() if not fresh and aid not in lost)
            planned = [p for p in planned if p[0] in lost]
            if not planned:
                return new, upd
        raise ValueError("alerts changed by others on every attempt; the next pass retries")

    # -- persisted state -----------------------------------------------------------
    def _check_fence(self) -> None:
        if self.fence is not None and not self.fence():
            raise LeaseLost("this engine no longer leads its rule set: pass abandoned, "
                            "its state left to the new leader")

    def _save(self, updates: dict[str, dict[str, Any]],
              closed: dict[str, tuple[int, dict[str, int]]], failed: set[str]) -> None:
        def apply(data: dict[str, Any]) -> None:
            self._check_fence()  # checked again if a conflict makes this run again
            coverage.record(data["coverage"], closed, self._regrown, failed)
            for rid, u in updates.items():
                if u["checkpoint"] is not None:
                    # never backwards: an engine that lost its lease mid-save must not
                    # undo a newer leader's progress (a re-examined window is harmless)
                    u["checkpoint"] = max(u["checkpoint"], data["checkpoints"].get(rid, 0))
                    data["checkpoints"][rid] = u["checkpoint"]
                if u["examined"] is not None:
                    data["examined"][rid] = min(u["examined"],
                                                data["examined"].get(rid, u["examined"]))
                h = data["health"].setdefault(rid, {"runs": 0, "errors": 0, "total_matches": 0,
                                                     "gaps": []})
                h["runs"] += 1
                h["last_run"] = al.iso(now_ms())
                h["duration_ms"] = u["duration_ms"]
                h["matches"] = u["matches"]
                h["total_matches"] += u["matches"]
                h["alerts"] = u["alerts"]
                h["snoozed_until"] = u["snoozed"]
                h["disabled"] = u["disabled"]
                h["engine"] = self.name
                if u["error"]:
                    h["errors"] += 1
                    h["last_error"] = u["error"]
                    h["last_error_at"] = h["last_run"]
                if u["gap"]:
                    h["gaps"] = (h["gaps"] + [u["gap"]])[-HEALTH_GAPS:]
                if u["checkpoint"] is not None:
                    h["checkpoint"] = al.iso(u["checkpoint"])
        self.state.update(apply)


def regular(matches: list[Match], max_jitter: float) -> bool:
    """A beacon: the gaps between connections vary by at most `max_jitter` (coefficient of
    variation), which humans browsing never manage and implants on a timer always do."""
    times = sorted(m.ts for m in matches)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    if len(gaps) < 2:
        return False
    mean = sum(gaps) / len(gaps)
    if mean <= 0:
        return False
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    return (var ** 0.5) / mean <= max_jitter


def _group_items(fields: list[str], key: tuple) -> tuple[tuple[str, Any], ...]:
    """An alert's group: its grouping fields with the values of `key` that are set."""
    return tuple((f, v) for f, v in zip(fields, key, strict=True) if v is not None)


def _doc_ts(doc: dict[str, Any]) -> int:
    return ecs.to_millis(doc["@timestamp"])


def _event_order(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["@timestamp"], doc["event"]["id"]


def _doc_order(doc: dict[str, Any]) -> tuple[int, str]:
    return ecs.to_millis(doc["@timestamp"]), doc["event"]["id"]


def exception_matches(exc: dict[str, Any], doc: dict[str, Any]) -> bool:
    """An exception is `field` with one or more values (`*` wildcards allowed): it excludes
    an event whose field equals (or, for a list field, contains) one of them."""
    value = ecs.get_field(doc, exc["field"])
    if value is None:
        return False
    have = [str(v) for v in (value if isinstance(value, list) else [value])]
    for want in exc["values"]:
        want = str(want)
        for h in have:
            if (fnmatch.fnmatchcase(h, want) if any(c in want for c in "*?[") else h == want):
                return True
    return False
