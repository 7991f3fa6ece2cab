"""The forkserver that download processes start from, started as early as a run knows it will want one.

Standard library only, so `equigen fetch --skip-discovery` and `fetch --manifest` can start it before they import
their verb (pandas, SciPy, aiohttp: ~1.3 s of one core): the forkserver's own imports (its preload: pycurl, NumPy,
Pillow, ~0.5 s) then run on another core at the same time, and the first download process forks from it at once.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver

# What the forkserver imports once, so each download process starts with it loaded (NumPy, Pillow, pycurl, ...);
# the forkserver skips a module it cannot import (pycurl missing: no download processes are started then)
FORKSERVER_PRELOAD = ["equigen.harvest.download_workers", "equigen.harvest.curl_covers"]


def start_forkserver_early() -> None:
    """Start the forkserver and its preload's imports now, in the background. Idempotent; nothing on a platform
    without forkserver."""
    try:
        multiprocessing.get_context("forkserver").set_forkserver_preload(FORKSERVER_PRELOAD)
    except ValueError:  # no forkserver on this platform
        return
    multiprocessing.forkserver.ensure_running()
