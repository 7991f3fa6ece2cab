"""The event loop every download runs on: uvloop's when installed (the `fast` extra), else asyncio's own."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop's faster event loop when it is installed (`pip install 'equigen[fast]'`;
    benchmarks/bench_download.py measures both)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
