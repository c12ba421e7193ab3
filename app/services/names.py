"""The names an import has met so far, for its duplicate check, in 8 bytes each.

A file of a million rows meets a million names. A ``set`` of their hashes costs 76 MB
(an int object and a slot for each); this table of the 64-bit hashes themselves, open
addressing with linear probing in one ``array``, costs 16 MB. Two names with the same
64-bit hash count as one, as they did in the ``set``.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable


class NameHashes:
    """A set of ``hash(name)`` values."""

    __slots__ = ("_count", "_mask", "_table")

    def __init__(self, bits: int = 16) -> None:
        self._table = array("q", bytes(8 << bits))
        self._mask = (1 << bits) - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: int) -> bool:
        key = key or 1  # 0 marks an empty slot
        return self._table[self._slot(key)] == key

    def add(self, key: int) -> bool:
        """Add ``key``; whether it was new."""
        key = key or 1
        slot = self._slot(key)
        if self._table[slot] == key:
            return False
        self._table[slot] = key
        self._count += 1
        if 2 * self._count > self._mask:
            self._grow()
        return True

    def _slot(self, key: int) -> int:
        """Where ``key`` is, or the empty slot where it would go (linear probing)."""
        table, mask = self._table, self._mask
        i = key & mask
        while table[i] != key and table[i] != 0:
            i = (i + 1) & mask
        return i

    def add_all_new(self, keys: list[int]) -> bool:
        """Add every one of ``keys`` if none is here yet and they are distinct (``True``);
        otherwise add none (``False``). One pass: a key found here undoes the batch's
        writes, which only filled empty slots."""
        if len(set(keys)) != len(keys):
            return False
        while 2 * (self._count + len(keys)) > self._mask:
            self._grow()
        table, mask = self._table, self._mask
        placed: list[int] = []
        for key in keys:
            key = key or 1
            i = key & mask
            while True:
                value = table[i]
                if value == 0:
                    table[i] = key
                    placed.append(i)
                    break
                if value == key:
                    for slot in placed:
                        table[slot] = 0
                    return False
                i = (i + 1) & mask
        self._count += len(placed)
        return True

    def _grow(self) -> None:
        old = self._table
        size = 2 * (self._mask + 1)
        self._table = array("q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0
        self.update(value for value in old if value)

    def update(self, keys: Iterable[int]) -> None:
        for key in keys:
            self.add(key)
