"""A list read a page at a time by statements written once, as the paginator reads a QuerySet.

Django's paginator slices its object list (one query for the page) and calls its `count()`
(one more, when it must). A domain's selector hands it a `Listing` of two functions instead
of a QuerySet, so that neither read builds its SQL again for every request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Row = TypeVar("Row")


class Listing(Generic[Row]):
    """Rows in a fixed order: `page(offset, limit)` reads some, `count()` counts them all."""

    ordered = True  # the paginator warns about an unordered list

    def __init__(self, page: Callable[[int, int], list[Row]], count: Callable[[], int]) -> None:
        self._page = page
        self._count = count

    def __getitem__(self, rows: slice) -> list[Row]:
        start = rows.start or 0
        stop = self.count() if rows.stop is None else rows.stop
        return self._page(start, max(0, stop - start))

    def __iter__(self) -> Iterator[Row]:
        return iter(self[0:])

    def count(self) -> int:
        return self._count()
