"""The request helpers: the GC pause around JSON parsing is shared safely by threads."""

from __future__ import annotations

import gc
import threading

from api.context import gc_paused


def test_gc_pause_nests_and_ends_with_the_last_user() -> None:
    assert gc.isenabled()
    entered, release = threading.Event(), threading.Event()

    def other_request() -> None:
        with gc_paused():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other_request)
    with gc_paused():
        thread.start()
        assert entered.wait(5)
        assert not gc.isenabled()
    # This request is done, another is still parsing: the collector stays paused for it.
    assert not gc.isenabled()
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_gc_resumes_when_parsing_raises() -> None:
    try:
        with gc_paused():
            raise ValueError("bad body")
    except ValueError:
        pass
    assert gc.isenabled()
