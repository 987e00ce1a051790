"""Keep the garbage collector off what a long-running process loaded as it started.

A full collection walks every object that could be in a reference cycle. Once Django, DRF,
Channels and Celery are imported that is about 160,000 objects, and one full collection
takes 90-105 ms of CPU here, during which no other thread of the process runs (it holds
the GIL). A busy worker or server allocates enough for one every few seconds: in
`bench.jobstream`, every job's output stalled together for 100-300 ms at a time.

`gc.freeze()` moves every object alive now into a permanent generation that collections
skip. Python's documentation advises it before a fork, too (children then do not touch the
parent's objects' GC counts, which keeps their pages shared):
https://docs.python.org/3/library/gc.html#gc.freeze. Objects made later are collected as
before; what was frozen is never freed, and it is what the process keeps for its life anyway.
"""

from __future__ import annotations

import gc


def freeze_loaded() -> None:
    """Collect what start-up left behind, then keep the collector off everything still alive."""
    gc.collect()
    gc.freeze()
