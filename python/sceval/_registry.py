"""One generic registry for models, tasks, metrics and datasets.

The key a user types is the same in the registry, the config, the CLI and R.
Unknown keys raise :class:`~sceval._errors.UnknownNameError` listing the valid
keys and suggesting the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sceval._errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping with did-you-mean errors.

    Parameters
    ----------
    kind
        What is registered (``"model"``, ``"task"``, ``"metric"``), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, key: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``key``; usable as a decorator when ``obj`` is omitted."""
        if not isinstance(key, str) or not key or key != key.strip():
            msg = f"A {self.kind} key must be a non-empty string without spaces, got {key!r}."
            raise ValueError(msg)

        def _add(o: T) -> T:
            if key in self._items and self._items[key] is not o:
                msg = f"The {self.kind} key {key!r} is already registered."
                raise ValueError(msg)
            self._items[key] = o
            return o

        if obj is None:
            return _add
        return _add(obj)

    def get(self, key: str) -> T:
        """Return the object registered under ``key``.

        Raises
        ------
        UnknownNameError
            With the list of valid keys and the closest match.
        """
        try:
            return self._items[key]
        except (KeyError, TypeError):
            pass
        valid = sorted(self._items)
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = (
            f"Unknown {self.kind} {key!r}.{hint} "
            f"Valid {self.kind}s: {', '.join(valid) if valid else '(none registered)'}."
        )
        raise UnknownNameError(msg)

    def unregister(self, key: str) -> None:
        """Remove ``key`` (plugins and tests that register temporary entries)."""
        self.get(key)  # unknown -> the usual did-you-mean error
        del self._items[key]

    def keys(self) -> list[str]:
        """Registered keys, sorted."""
        return sorted(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)
