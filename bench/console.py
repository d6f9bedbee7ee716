"""Benchmark of the console (issue 16 targets: first contentful paint of the overview and of
the alert queue ≤ 1 s with 10,000 alerts over 1,000,000 events, on loopback).

The API serves the console as `govsoc up` does (uvicorn, one worker in a thread, plain HTTP
on loopback) over a SQLite store holding 1,000,000 events (7 days, two departments) and
10,000 open alerts (30 days). Debian's Chromium (headless, through Playwright) loads each
page in a fresh tab of a logged-in context, warm (the static scripts cached, as an analyst's
browser has them), and reads its own Performance timing: `first-contentful-paint`, plus
for the overview the moments its alert charts and then its traffic charts have drawn
(each needs its part of /ui/overview.json).

Reference, same run, same server: the very bytes each page produced, saved and served as a
static file (same scripts, same styles, no server work). The ratio page/reference is the
cost of the server's work on that data.

Acknowledge (target ≤ 200 ms): in the queue of one analyst, the `a` key acknowledges the
current alert; the time from the key press (the keydown event's own timestamp) to the
row's leaving that page's open queue, and to its leaving the open queue of a second
analyst's browser context (the live queue, soc_api.live), both read on the browser's clock
(`performance.timeOrigin + now()`: one machine, one clock). Median and p95 of `--acks`.
Reference for it, same run: the same key press answered by the page without the API (a
keydown listener that removes the row at once), i.e. what the browser itself costs.

`--store es` (or both) runs the same on Elasticsearch (`--es-url`, default the shared dev
node), filled with `--es-events` events (default 100,000: the queue and the acknowledge
do not read events; the overview does) and the same alerts.

    python bench/console.py [--events 1000000] [--alerts 10000] [--rounds 7] [--acks 30]
                            [--store sqlite|es|both] [--es-url URL] [--es-events N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from ports import free_port, wait_port  # noqa: E402

# made per run: a benchmark has no secret worth keeping
MASTER = secrets.token_urlsafe(32)
PASSWORD = "Gov-Soc-" + secrets.token_urlsafe(12)  # upper, lower and a symbol: the policy
DEPTS = (("wjw", "市卫健委", "10.1"), ("gaj", "市公安局", "10.2"))
LEVELS = ("critical", "high", "medium", "low")
TACTICS = ("Initial Access", "Credential Access", "Discovery", "Lateral Movement",
           "Execution", "Exfiltration")
CORE_CHARTS = ("chart-index", "chart-trend", "chart-level", "chart-tactic", "chart-dept")
CHARTS = (*CORE_CHARTS, "chart-sources", "chart-targets")  # + the day's traffic


def fill(store, n_events: int, n_alerts: int) -> None:
    from soc_core import ecs

    now = datetime.now(UTC)
    span = 7 * 86400
    batch = []
    t0 = time.monotonic()
    for i in range(n_events):
        dept, name, net = DEPTS[i % 2]
        batch.append({
            "@timestamp": ecs.format_time(now - timedelta(seconds=(i * span) // n_events)),
            "event": {"dataset": "network.flow", "kind": "event", "action": "flow",
                      "id": ecs.stable_id("bench-console", i)},
            "host": {"name": f"{dept}-host-{i % 40}"},
            "source": {"ip": f"203.0.{(i // 251) % 200}.{i % 251 + 1}", "port": 1024 + i % 60000},
            "destination": {"ip": f"{net}.{i % 16}.{i % 200 + 1}", "port": (22, 80, 443)[i % 3]},
            "network": {"transport": "tcp"},
            "organization": {"id": dept, "name": name},
            "message": f"flow {i}"})
        if len(batch) == 20_000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    alerts = []
    for i in range(n_alerts):
        dept, name, net = DEPTS[i % 2]
        t = ecs.format_time(now - timedelta(seconds=(i * 30 * 86400) // n_alerts))
        alerts.append({
            "@timestamp": t, "message": f"bench alert {i}",
            "event": {"kind": "alert", "id": f"bench-al-{i}", "dataset": "govsoc.alert",
                      "module": "govsoc", "severity": 50, "start": t, "end": t},
            "rule": {"id": f"rule-{i % 50}", "name": f"可疑行为规则 {i % 50}"},
            "threat": {"tactic": {"name": [TACTICS[i % len(TACTICS)]]}},
            "host": {"name": f"{dept}-host-{i % 40}"},
            "source": {"ip": f"203.0.{i % 200}.{i % 251 + 1}"},
            "destination": {"ip": f"{net}.{i % 16}.{i % 200 + 1}"},
            "organization": {"id": dept, "name": name},
            "govsoc": {"departments": [dept], "alert": {
                "status": "open", "level": LEVELS[i % 4], "count": 1, "first_seen": t,
                "last_seen": t, "event_ids": [], "notes": [], "created": t}}})
    store.write(alerts, refresh=True)
    print(f"stored {n_events:,} events and {n_alerts:,} alerts in "
          f"{time.monotonic() - t0:.0f} s")


def poll(page, expression: str, arg=None):
    """The value of `expression` once truthy, read every 5 ms. (Playwright's
    wait_for_function compiles its predicate with eval, which the console's CSP refuses.)"""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        value = page.evaluate(expression, arg)
        if value:
            return value
        time.sleep(0.005)
    toast = page.evaluate("() => (document.getElementById('toast') || {}).textContent")
    raise SystemExit(f"{page.url}: still not {expression!r} after 60 s (last toast: {toast!r})")


def fcp(context, url: str, charts: bool) -> tuple[float, float | None, float | None]:
    page = context.new_page()
    page.goto(url, wait_until="load")
    paint = poll(page, "() => { const e = performance.getEntriesByName("
                       "'first-contentful-paint'); return e.length && e[0].startTime; }")
    core = drawn = None
    if charts:
        expr = ("ids => ids.every(id => { const e = document.getElementById(id);"
                " return e && echarts.getInstanceByDom(e); }) && performance.now()")
        core = poll(page, expr, list(CORE_CHARTS))
        drawn = poll(page, expr, list(CHARTS))
    page.close()
    return paint, core, drawn


_WATCH = """id => new Promise(done => {
    const gone = () => !document.querySelector(`#rows tr[data-id="${CSS.escape(id)}"]`);
    window.__gone = null;
    if (gone()) { window.__gone = performance.timeOrigin + performance.now(); return done(); }
    new MutationObserver((_, obs) => { if (gone()) {
        window.__gone = performance.timeOrigin + performance.now(); obs.disconnect(); } })
      .observe(document.getElementById('rows'), {childList: true});
    done(); })"""
_KEY = """() => { window.__key = null; document.addEventListener('keydown', e => {
    if (e.key === 'a') window.__key = performance.timeOrigin + e.timeStamp; },
    {capture: true, once: true}); }"""
_LOCAL = """() => document.getElementById('rows').addEventListener('keydown', e => {
    if (e.key !== 'a') return;
    e.stopPropagation();  // the queue's own handler (on the document) never sees it
    const tr = e.target.closest('tr'); if (tr) tr.remove(); })"""


_POST = """id => { const e = performance.getEntriesByType('resource').filter(
    r => r.name.endsWith('/alerts/' + encodeURIComponent(id) + '/transition'));
    return e.length ? e[e.length - 1].duration : null; }"""


def acknowledge(mine, theirs, n: int, posts: list[float] | None = None
                ) -> tuple[list[float], list[float]]:
    """`n` acknowledgements in `mine` (its current row, key `a`); the ms from key press to
    the row gone from `mine` and from `theirs` (None when `theirs` is None). `posts` gets
    each transition request's own duration (Resource Timing): the server's part of it."""
    here, there = [], []
    for _ in range(n):
        # the id first, then that very row: a locator resolves anew at each use, and a row
        # the queue's poll prepends in between would make the row clicked and the row
        # watched two different alerts (the key then removes one, the watch waits for the other)
        target = mine.locator("#rows tr").first.get_attribute("data-id")
        row = mine.locator(f'#rows tr[data-id="{target}"]')
        row.locator("td").nth(2).click()  # the current row, focused, as an analyst picks it
        mine.evaluate(_WATCH, target)
        if theirs is not None:
            theirs.evaluate(_WATCH, target)
        mine.evaluate(_KEY)
        mine.keyboard.press("a")
        pressed = poll(mine, "() => window.__key")
        here.append(poll(mine, "() => window.__gone") - pressed)
        if theirs is not None:
            there.append(poll(theirs, "() => window.__gone") - pressed)
        if posts is not None:
            # (the row can leave before the answer is in: the page's own live stream)
            posts.append(poll(mine, _POST, target))
        mine.wait_for_timeout(50)  # the toast and the status line settle
    return here, there


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--acks", type=int, default=30)
    ap.add_argument("--store", choices=("sqlite", "es", "both"), default="sqlite")
    ap.add_argument("--es-url", default="http://127.0.0.1:9260")
    ap.add_argument("--es-events", type=int, default=100_000)
    args = ap.parse_args()
    for backend in (("sqlite", "es") if args.store == "both" else (args.store,)):
        run_store(backend, args)


def run_store(backend: str, args: argparse.Namespace) -> None:
    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("bench/console.py needs Debian's chromium (make bench installs it)")
    os.environ["GOVSOC_MASTER_KEY"] = MASTER
    from playwright.sync_api import sync_playwright
    from starlette.staticfiles import StaticFiles

    from soc_api.app import build_context, create_app
    from soc_api.serve import Listen, serve_in_thread
    from soc_core.config import Config
    from soc_core.store import open_store

    folder = Path(tempfile.mkdtemp(prefix="bench-console-"))
    try:
        if backend == "sqlite":
            store = open_store(f"sqlite:///{folder}/govsoc.db")
            n_events = args.events
        else:
            store = open_store(args.es_url, namespace="benchconsole" + secrets.token_hex(4))
            n_events = args.es_events
        print(f"\n== {backend} store ==")
        fill(store, n_events, args.alerts)
        cfg = Config(values={"store_url": store.url, "data_dir": str(folder / "data"),
                             "timezone": "Asia/Shanghai", "crypto": {"kdf_iterations": 1000},
                             "departments": [{"id": d, "name": n, "cidrs": [f"{net}.0.0/16"]}
                                             for d, n, net in DEPTS]})
        ctx = build_context(cfg, store=store)
        for user in ("benchuser", "benchpeer"):
            otp = ctx.identity.add_user(user, roles_=["analyst"], departments=["*"])
            ctx.identity.change_password(user, otp, PASSWORD)
        app = create_app(cfg, context=ctx)
        ref_dir = folder / "ref"
        ref_dir.mkdir()
        app.app.mount("/bench-ref", StaticFiles(directory=ref_dir))
        listen = Listen("127.0.0.1", free_port(), 1, insecure_http=True)
        stop = threading.Event()
        threading.Thread(target=serve_in_thread, args=(cfg, listen, stop, app),
                         daemon=True).start()
        assert wait_port(listen.port), "the API did not start"
        base = listen.url
        pages = {"overview": "/", "queue": "/ui/alerts"}
        results: dict[str, list[tuple[float, float | None, float | None]]] = {}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium,
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            login = context.new_page()
            login.goto(base + "/login")
            login.fill("#username", "benchuser")
            login.fill("#password", PASSWORD)
            login.click("#login-form button[type=submit]")
            login.wait_for_url(base + "/", timeout=120_000)
            login.close()
            for name, path in pages.items():  # the reference: these very bytes, static
                t = time.monotonic()
                r = context.request.get(base + path, headers={"accept": "text/html"})
                assert r.ok, (path, r.status)
                body = r.body()
                print(f"{name}: {len(body):,} bytes rendered in {time.monotonic() - t:.2f} s "
                      f"(server side, with the request)")
                (ref_dir / f"{name}.html").write_bytes(body)
            for part in ("core", "traffic"):
                t = time.monotonic()
                r = context.request.get(base + "/ui/overview.json?part=" + part)
                assert r.ok, r.status
                print(f"overview figures (/ui/overview.json?part={part}): {len(r.body()):,} "
                      f"bytes in {time.monotonic() - t:.2f} s")
            for name, path in pages.items():  # warm: scripts and styles in the cache
                fcp(context, base + path, name == "overview")
                fcp(context, f"{base}/bench-ref/{name}.html", name == "overview")
            for _ in range(args.rounds):
                for name, path in pages.items():
                    for kind, url in ((name, base + path),
                                      (name + " (reference)", f"{base}/bench-ref/{name}.html")):
                        results.setdefault(kind, []).append(fcp(context, url,
                                                                name == "overview"))
            # acknowledge: one analyst's queue, and a second analyst's open beside it
            peer = browser.new_context(viewport={"width": 1440, "height": 900})
            assert peer.request.post(base + "/auth/login", data={
                "username": "benchpeer", "password": PASSWORD}).ok
            queue = "/ui/alerts?status=open"
            mine, theirs = context.new_page(), peer.new_page()
            for pg in (mine, theirs):
                pg.goto(base + queue, wait_until="load")
                poll(pg, "() => document.querySelector('#rows tr.current')")
            poll(mine, "() => !!window.govsoc")
            theirs.wait_for_timeout(500)  # its live stream is open
            acknowledge(mine, theirs, 3)  # warm
            posts: list[float] = []
            ack_self, ack_peer = acknowledge(mine, theirs, args.acks, posts)
            # oldest first: the queue polls for new alerts only when sorted newest first, and
            # that poll would put back the rows this page removes without the API (they are
            # still open on the server) as new alerts, over and over
            local = context.new_page()
            local.goto(base + queue + "&sort=oldest", wait_until="load")
            poll(local, "() => document.querySelector('#rows tr.current')")
            local.evaluate(_LOCAL)
            ack_ref, _ = acknowledge(local, None, args.acks)
            browser.close()
        stop.set()
        load = os.getloadavg()
        print(f"\nfirst contentful paint, median of {args.rounds} (load average "
              f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, {os.cpu_count()} CPUs):")
        for name in pages:
            mine = statistics.median(r[0] for r in results[name])
            ref = statistics.median(r[0] for r in results[name + " (reference)"])
            line = f"  {name:9s} FCP {mine:7.0f} ms   reference {ref:5.0f} ms   ratio " \
                   f"{mine / ref:4.2f}"
            if name == "overview":
                core = statistics.median(r[1] for r in results[name])
                drawn = statistics.median(r[2] for r in results[name])
                line += (f"\n            alerts' charts drawn {core:6.0f} ms, the traffic's too "
                         f"{drawn:6.0f} ms (the reference page fetches the same figures)")
            print(line)
        print("  target: FCP ≤ 1000 ms for each page")
        print(f"\nacknowledge (key `a`) until the row leaves the open queue, {args.acks} "
              f"alerts, ms ({backend}):")
        for name, values in (("this page", ack_self), ("another analyst's page", ack_peer),
                             ("the transition request alone", posts),
                             ("reference: the page alone, no API", ack_ref)):
            print(f"  {name:36s} median {statistics.median(values):6.1f}   "
                  f"p95 {p95(values):6.1f}   max {max(values):6.1f}")
        print(f"  ratio this page / reference (median): "
              f"{statistics.median(ack_self) / max(statistics.median(ack_ref), 0.1):.1f}")
        print("  target: ≤ 200 ms")
        ctx.trail.close()
        if backend == "es":
            store.drop_all()
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
