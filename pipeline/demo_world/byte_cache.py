"""A byte-bounded LRU cache of rendered images (the demo server renders each image once)."""

from __future__ import annotations

import collections


class ByteLRU:
    """A least-recently-used map of encoded images, bounded by the sum of their lengths."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple) -> bytes | None:
        data = self._items.get(key)
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return data

    def put(self, key: tuple, data: bytes) -> None:
        if len(data) > self.max_bytes or key in self._items:
            return
        self._items[key] = data
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= len(old)
