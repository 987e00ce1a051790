"""`realtime.kernel.heap`: what a process loaded at start is kept out of garbage collections."""

from __future__ import annotations

import gc

from realtime.kernel import heap


def test_freezing_moves_what_is_alive_out_of_the_collectors_reach():
    before = gc.get_freeze_count()
    try:
        heap.freeze_loaded()

        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
