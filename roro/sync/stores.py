"""The two stores of a sync or copy: resolved from URLs, paths or remote names, and counted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..config import resolve_store
from ..storage.wrappers import CountingBackend
from ..store import Store

StoreSpec = Store | str


def counted(store: Store) -> tuple[Store, CountingBackend]:
    """A second handle on ``store`` (same backend, so the same index file) whose requests are
    counted."""
    counter = CountingBackend(store.backend)
    return Store(counter), counter


@contextlib.contextmanager
def counted_pair(src: StoreSpec, dst: StoreSpec) -> Iterator[tuple[Store, Store, CountingBackend,
                                                        CountingBackend]]:
    """Resolve SRC and DST, and give request-counting handles on both; closes what it opened."""
    opened: list[Store] = []
    stores = []
    for spec in (src, dst):
        store = resolve_store(spec)
        if store is not spec:
            opened.append(store)
        stores.append(store)
    src_c, src_counter = counted(stores[0])
    dst_c, dst_counter = counted(stores[1])
    try:
        yield src_c, dst_c, src_counter, dst_counter
    finally:
        for s in (src_c, dst_c, *opened):
            s.close()


