"""``locked``: a method that runs holding its instance's ``_lock`` (a ``threading.Lock``).

The worker computes a batch in a thread of its own while its event loop answers queries and
finishes earlier batches' writes; the few objects both touch (the state cache, the trending
counts) take their lock in every method that reads or changes them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def locked(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def holding(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._lock:
            return method(*args, **kwargs)

    return holding
