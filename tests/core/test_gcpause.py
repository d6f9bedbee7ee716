"""The pause of the cycle collector (detection passes, report rendering): pauses in several
threads nest, and the collector is back on when the last one ends (it is one collector for
the whole process)."""

from __future__ import annotations

import gc
import threading

from soc_core.gcpause import cyclic_gc_paused


def test_passes_in_two_threads_nest_and_the_collector_resumes_after_the_last():
    assert gc.isenabled()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with cyclic_gc_paused():
            first_in.set()
            second_in.wait(30)
        first_out.set()

    def second() -> None:
        first_in.wait(30)
        with cyclic_gc_paused():
            second_in.set()
            first_out.wait(30)
            seen["after the first pass ended"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == {"after the first pass ended": False}  # still paused for the second
    assert gc.isenabled()


def test_a_process_that_had_the_collector_off_keeps_it_off():
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
