"""Chunk reading: the collector pause holds across overlapping chunks in two threads."""

from __future__ import annotations

import gc
import threading

from vitalops.ingest.chunks import collector_paused


def test_overlapping_pauses_keep_the_collector_off_until_the_last_ends() -> None:
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def build_in_another_thread() -> None:
        with collector_paused():
            inside.set()
            release.wait(10)

    builder = threading.Thread(target=build_in_another_thread)
    builder.start()
    inside.wait(10)
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread still builds its chunk
    release.set()
    builder.join(10)
    assert gc.isenabled()
