"""The live queue's in-process feed: a waiting stream is woken by a change published from
another thread (an API worker's sync route), and sees exactly the changes after its mark."""

from __future__ import annotations

import asyncio
import threading

from soc_api.live import AlertFeed


def run(coro):
    """asyncio.run in a thread of its own: Playwright's sync API may already run a loop in
    this one (the browser tests share the worker)."""
    out = {}
    t = threading.Thread(target=lambda: out.update(value=asyncio.run(coro)))
    t.start()
    t.join()
    assert "value" in out, "the coroutine raised (see the thread's traceback)"
    return out["value"]


def test_a_waiting_stream_is_woken_by_a_change_from_another_thread():
    hub = AlertFeed()
    hub.publish([{"event": {"id": "before"}}])
    mark, _ = hub.since(0)

    async def follow() -> list[str]:
        threading.Timer(0.05, hub.publish, args=([{"event": {"id": "al-1"}}],)).start()
        # woken by the publish: a broken wake-up would sleep the whole minute, and the
        # outer bound turns that into a failure instead of a slow pass
        await asyncio.wait_for(hub.wait(mark, 60), 20)
        _, docs = hub.since(mark)
        return [d["event"]["id"] for d in docs]

    assert run(follow()) == ["al-1"]
    assert not hub.waiters  # the waiter is gone once woken


def test_wait_returns_at_once_when_a_change_is_already_there_and_times_out_otherwise():
    hub = AlertFeed()
    hub.publish([{"event": {"id": "al-2"}}])

    async def both() -> None:
        await asyncio.wait_for(hub.wait(0, 60), 20)  # seq 1 > 0: no waiting at all
        await hub.wait(1, 0.01)  # nothing new: back after the timeout, no error

    run(both())
    assert not hub.waiters
