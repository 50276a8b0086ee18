"""Counting the update calls chosen methods execute, and how many repeated an earlier one.

Tests ask a localnet how often a method ran and whether the same call
(same canister, method and argument bytes) ran more than once: e.g. a
chunk written twice after an orchestrator was killed between writing it
and recording it.  Off until ``PUT /_/calls {"methods": [...]}`` names the
methods to watch (which also resets the counts); ``GET /_/calls`` answers
``{method: {"calls": n, "repeats": r}}``.  A digest of every watched call
is kept, so watch only what a test needs.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from typing import Any


class CallCount:
    """Executions of watched methods, shared by the replicas of one localnet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._methods: frozenset[str] = frozenset()
        self._calls: Counter[str] = Counter()
        self._repeats: Counter[str] = Counter()
        self._seen: set[bytes] = set()

    def watch(self, methods: list[str]) -> None:
        """Count ``methods`` from now on (and forget what was counted)."""
        with self._lock:
            self._methods = frozenset(methods)
            self._calls.clear()
            self._repeats.clear()
            self._seen.clear()

    def saw(self, callee: bytes, method: str, arg: bytes) -> None:
        """A replicated call of ``method`` on ``callee`` is being executed."""
        if method not in self._methods:
            return
        digest = hashlib.sha256(b"%d:%s\0%s\0" % (len(callee), callee, method.encode())).digest()
        digest = hashlib.sha256(digest + arg).digest()[:16]
        with self._lock:
            self._calls[method] += 1
            if digest in self._seen:
                self._repeats[method] += 1
            else:
                self._seen.add(digest)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                m: {"calls": self._calls[m], "repeats": self._repeats[m]}
                for m in sorted(self._methods)
            }
