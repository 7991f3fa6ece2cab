"""Serve the benchmark world's covers from a separate process (so each tool's CPU is its own).

    python benchmarks/_sim_server.py [--smoke] [--size 500]

Loads the covers rendered once into benchmarks/work/covers/ (rendering the missing ones) into the
world's byte cache, starts the simulator on a free loopback port with request logging and the
MusicBrainz rate limit off, prints one JSON line {"url": ..., "covers": N} and serves until stdin
closes (the parent exits or closes the pipe) or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from equigen.simulator import SimConfig, start_simulator  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--limit", type=int, default=0, help="preload only the first N covers (the rest render on demand)")
    args = p.parse_args()
    world = C.bench_world(args.smoke)
    mbids = C.usable_mbids(world, distinct=False)
    if args.limit:
        mbids = mbids[: args.limit]
    data = C.covers(world, mbids, args.size)
    side = world.side(args.size)
    for mbid, body in zip(mbids, data):
        world._cache.put((mbid, side), body)  # the server's fast path: world.cached_cover
    sim_config = SimConfig(log_requests=False, rate_limit=0)

    async def serve() -> None:
        handle = await start_simulator(sim_config=sim_config, world=world)
        print(json.dumps({"url": handle.url, "covers": len(mbids)}), flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1 << 16) else None)
        await stop.wait()
        await handle.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
