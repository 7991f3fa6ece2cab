"""pHash speed and fidelity: equigen.core.images.inspect_image / phash_hex vs imagehash.phash vs imagededup PHash.

    python benchmarks/bench_phash.py [--n 2000] [--size 500] [--smoke] [--ours-only]

All start from the same JPEG bytes (distinct simulator covers, the exact bytes the simulator serves)
and end with a 64-bit hash, single thread:
- ours, inspect_image(bytes): validation (every JPEG coefficient entropy-decoded, at 1/4 scale by libjpeg-turbo),
  sha256 and pHash: what the downloader runs per cover;
- ours, phash_hex(Image.open(bytes)): full decode, then the imagehash definition as matrix products (bit-equal);
- imagehash.phash(Image.open(bytes));
- imagededup PHash().encode_image(image_array=np.asarray(Image.open(bytes).convert("RGB"))): decode included.
Fidelity: Hamming distance of each of our hashes to imagehash's (mean, p99, max). The tools take turns in
--rounds rounds (best of each), so all meet the same load; inspect_image's parts (decode, sha256) are timed too.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from equigen.core.images import _clean_jpeg_luma, hamming, inspect_image, phash_hex  # noqa: E402

NAME = "bench_phash"


def per_image(fn, items, warmup: int = 20) -> tuple[float, list]:
    for x in items[:warmup]:
        fn(x)
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return (time.perf_counter() - t0) / len(items), out


def alternating(tools: dict, items, rounds: int) -> dict:
    """Each tool's best per-image time over `rounds` rounds, the tools taking turns within a round so that
    all of them meet the same machine load; with the hashes of the last round."""
    best: dict = {}
    for _ in range(rounds):
        for name, fn in tools.items():
            t, out = per_image(fn, items)
            if name not in best or t < best[name][0]:
                best[name] = (t, out)
    return best


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; each tool's best is kept")
    args = p.parse_args()
    if args.smoke:
        args.n, args.rounds = 40, 1
    world = C.bench_world(args.smoke)
    mbids = C.usable_mbids(world)
    step = max(1, len(mbids) // args.n)
    data = C.covers(world, mbids[::step][: args.n], args.size)
    side = Image.open(io.BytesIO(data[0])).size
    install = not args.no_install
    imagehash = None if args.ours_only else C.anchor("imagehash", "ImageHash", install=install)
    imagededup = None if args.ours_only else C.anchor("imagededup", install=install)

    tools = {
        "inspect": lambda b: inspect_image(b).phash,
        "phash_hex": lambda b: phash_hex(Image.open(io.BytesIO(b))),
        # the parts of inspect_image, for the profile in RESULTS.md: the validating decode is the floor
        "decode_only": lambda b: _clean_jpeg_luma(b, 1 << 62, 1),
        "sha256_only": lambda b: hashlib.sha256(b).hexdigest(),
    }
    if imagehash is not None:
        tools["imagehash"] = lambda b: str(imagehash.phash(Image.open(io.BytesIO(b))))
    best = alternating(tools, data, args.rounds)
    (t_inspect, h_inspect), (t_full, h_full) = best["inspect"], best["phash_hex"]
    details = {
        "n": len(data),
        "side": side,
        "rounds": args.rounds,
        "ours_inspect_ms": t_inspect * 1e3,
        "ours_phash_hex_ms": t_full * 1e3,
        "decode_only_ms": best["decode_only"][0] * 1e3,
        "sha256_only_ms": best["sha256_only"][0] * 1e3,
    }
    rows = []
    goal = ">= 5x faster than imagehash, mean distance <= 2 bits"
    if imagehash is not None:
        t_ih, h_ih = best["imagehash"]
        details["imagehash_ms"] = t_ih * 1e3
        for label, t, hs in (
            ("inspect_image (validate + sha256 + pHash)", t_inspect, h_inspect),
            ("phash_hex (full decode)", t_full, h_full),
        ):
            dist = np.array([hamming(a, b) for a, b in zip(hs, h_ih)])
            stats = {
                "mean": float(dist.mean()),
                "p99": float(np.percentile(dist, 99)),
                "max": int(dist.max()),
                "identical": float(np.mean(dist == 0)),
            }
            details[f"distance_{label.split()[0]}"] = stats
            exact = label.startswith("phash_hex")  # the reference definition: its goal is distance 0
            rows.append(
                C.row(
                    f"pHash {len(data)} covers {side[0]} px: ours {label} vs imagehash.phash",
                    f"{t * 1e3:.2f} ms/img; dist to imagehash mean {stats['mean']:.2f}, p99 {stats['p99']:.0f}",
                    f"{t_ih * 1e3:.2f} ms/img (ImageHash {C.version_of('ImageHash')})",
                    t_ih / t,
                    "bit-equal to imagehash (distance 0), not slower" if exact else goal,
                    bool(stats["max"] == 0 and t_ih / t >= 1) if exact else bool(t_ih / t >= 5 and stats["mean"] <= 2),
                    f"max {stats['max']}, identical {stats['identical']:.0%}"
                    + (
                        ""
                        if exact
                        else f"; of which the validating decode {details['decode_only_ms']:.2f} ms, "
                        f"sha256 {details['sha256_only_ms']:.2f} ms; best of {args.rounds} alternating rounds"
                    ),
                )
            )
    if imagededup is not None:
        from imagededup.methods import PHash

        ph = PHash(verbose=False)
        t_idd, h_idd = per_image(
            lambda b: ph.encode_image(image_array=np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))), data
        )
        details["imagededup_ms"] = t_idd * 1e3
        dist = np.array([hamming(a, b) for a, b in zip(h_inspect, h_idd)])
        details["distance_inspect_vs_imagededup"] = {"mean": float(dist.mean()), "p99": float(np.percentile(dist, 99))}
        rows.append(
            C.row(
                f"pHash {len(data)} covers {side[0]} px: ours inspect_image vs imagededup PHash",
                f"{t_inspect * 1e3:.2f} ms/img",
                f"{t_idd * 1e3:.2f} ms/img (imagededup {C.version_of('imagededup')}, decode incl.)",
                t_idd / t_inspect,
                ">= 5x faster",
                bool(t_idd / t_inspect >= 5),
                f"dist ours-imagededup mean {dist.mean():.2f}, p99 {np.percentile(dist, 99):.0f} "
                "(imagededup resizes with its own pipeline, so it is not bit-equal to imagehash)",
            )
        )
    if not rows:
        rows.append(
            C.row(
                f"pHash {len(data)} covers (ours only)",
                f"{t_inspect * 1e3:.2f} ms/img (inspect_image), {t_full * 1e3:.2f} ms/img (phash_hex)",
                "-",
                None,
                goal,
                None,
            )
        )
    print({k: v for k, v in details.items()})
    C.write_results(NAME, rows, args, details)


if __name__ == "__main__":
    main()
