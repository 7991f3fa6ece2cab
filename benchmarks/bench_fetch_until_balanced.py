"""One `equigen fetch --per-genre N`, then `dedup` and `balance --per-genre N`: does every genre that has the
albums balance with no second fetch, and how many covers are stored per published cover?

    python benchmarks/bench_fetch_until_balanced.py [--per-genre 150] [--smoke]
    python benchmarks/bench_fetch_until_balanced.py --anchor /path/to/older/equigen/checkout

Simulator worlds, each served by `equigen simulate` in its own process with the real 1 request/s rule:
  * "reissues15": 12,000 artists, 50 % Cover Art Archive coverage in every genre, New Age thin (12 artists),
    and 15 % of covers reissues (`--reissues 0.15`: another cover of the genre re-encoded at another quality,
    size or with a border; on top of the default 5 % duplicates);
  * "reissues4": the same with 4 % reissues (both run by default);
  * "coverage50": the same with no extra reissues; "default": the default world (3,000 artists, coverage
    spread 45-90 % by genre; about 9 minutes at --per-genre 150).
Ground truth (per genre, covers usable under the artist cap) comes from the simulator's /__sim__/truth, so
a shortfall can be told apart from a fetch that gave up early. `--anchor` runs an older checkout's
`fetch --per-genre N` (with its own defaults, e.g. --oversample 1.5) against the same worlds: the
comparison the stop-at-candidates design loses. Writes benchmarks/results/bench_fetch_until_balanced.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import _common as C  # noqa: E402

ROOT = BENCH.parent
COVERAGE50 = ["--artists", "12000", "--art-coverage", "0.5", "--thin", "New Age"]
WORLDS = {
    "reissues15": [*COVERAGE50, "--reissues", "0.15"],
    "reissues4": [*COVERAGE50, "--reissues", "0.04"],
    "coverage50": COVERAGE50,
    "default": [],
}


def equigen(args: list[str], pythonpath: str | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    # `python -m` puts the working folder first on sys.path: run from the checkout whose code is meant
    return subprocess.run(
        [sys.executable, "-m", "equigen.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=pythonpath or ROOT,
        **kw,
    )


def ok_covers(catalog: Path) -> int:
    with sqlite3.connect(catalog) as con:
        return con.execute("SELECT COUNT(*) FROM covers WHERE status = 'ok'").fetchone()[0]


def last_fetch(catalog: Path) -> dict:
    with sqlite3.connect(catalog) as con:
        row = con.execute("SELECT value FROM meta WHERE key = 'last_fetch'").fetchone()
    return json.loads(row[0]) if row else {}


def run_world(name: str, per_genre: int, anchor: str | None, work: Path) -> dict:
    sim, url = C.simulator_process(WORLDS[name])
    try:
        truth = json.loads(urllib.request.urlopen(f"{url}/__sim__/truth", timeout=30).read())
        data = work / f"{name}-{'anchor' if anchor else 'ours'}"
        common = ["--data-dir", str(data)]
        t0 = time.monotonic()
        fetch = equigen(
            ["fetch", *common, "--musicbrainz-url", url, "--coverart-url", url, "--per-genre", str(per_genre)],
            pythonpath=anchor,
        )
        wall = time.monotonic() - t0
        if fetch.returncode != 0:
            raise SystemExit(f"fetch failed: {fetch.stderr[-2000:]}")
        log = json.loads(urllib.request.urlopen(f"{url}/__sim__/log", timeout=60).read())
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    dedup = equigen(["dedup", *common], pythonpath=anchor)
    balance = equigen(["balance", *common, "--per-genre", str(per_genre)], pythonpath=anchor)
    report = json.loads((data / "reports" / "balance.json").read_text())
    short = {g["genre"]: g["shortfall"] for g in report["genres"] if g["shortfall"] > 0}
    capped = {g: v["usable_capped"] for g, v in truth["genres"].items()}
    lacking = sorted(g for g, n in capped.items() if n < per_genre)  # the world does not hold N there
    published = sum(g["selected"] for g in report["genres"])
    stored = ok_covers(data / "catalog.sqlite")
    fetched = last_fetch(data / "catalog.sqlite")
    balance_usable = {g["genre"]: g["usable"] for g in report["genres"]}
    world_copies = sum(v["duplicates"] for v in truth["genres"].values())
    world_covers = world_copies + sum(v["usable"] for v in truth["genres"].values())
    return {
        "world": name,
        "per_genre": per_genre,
        "wall_s": round(wall, 1),
        "mb_requests": sum(1 for e in log if e["service"] == "musicbrainz"),
        "cover_requests": sum(1 for e in log if e["service"] == "coverart"),
        "stored": stored,
        "published": published,
        "stored_per_published": round(stored / published, 3) if published else None,
        "balance_ok_first_time": balance.returncode == 0,
        "short_genres": short,
        "genres_lacking_albums": lacking,
        "short_but_world_has_them": sorted(set(short) - set(lacking)),
        "dedup_ok": dedup.returncode == 0,
        "world_copies_share": round(world_copies / world_covers, 3) if world_covers else None,
        "fetch_count_equals_balance": fetched.get("usable") == balance_usable if fetched.get("usable") else None,
        "rounds": fetched.get("rounds"),
        "duplicates_stored": sum(g.get("duplicates", 0) for g in report["genres"]),
        "duplicates_by_genre": {g["genre"]: g.get("duplicates", 0) for g in report["genres"]},
        "over_cap": sum(g.get("over_cap", 0) for g in report["genres"]),
        "shortfall_lines": re.findall(r"short: [^\n]+", fetch.stderr.replace("\n", " ").replace("  ", " ")),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-genre", type=int, default=150)
    p.add_argument("--anchor", help="path of an older equigen checkout to run the same commands with")
    p.add_argument("--worlds", default="reissues15,reissues4")
    p.add_argument("--smoke", action="store_true", help="per-genre 10 on the default world; writes nothing")
    args = p.parse_args()
    if args.smoke:
        args.per_genre, args.worlds = 10, "default"
    results = []
    with tempfile.TemporaryDirectory(dir=BENCH / "work" if (BENCH / "work").is_dir() else None) as tmp:
        for world in args.worlds.split(","):
            for anchor in [None, args.anchor] if args.anchor else [None]:
                row = run_world(world, args.per_genre, anchor, Path(tmp))
                row["code"] = "anchor" if anchor else "ours"
                print(json.dumps(row), flush=True)
                results.append(row)
    if args.smoke:
        return
    rows = []
    for ours in (r for r in results if r["code"] == "ours"):
        anchor = next((r for r in results if r["code"] == "anchor" and r["world"] == ours["world"]), None)
        rows.append(
            {
                "comparison": f"fetch --per-genre {ours['per_genre']} then balance, world {ours['world']}",
                "ours": (
                    f"{ours['stored_per_published']} stored per published ({ours['stored']} / {ours['published']}; "
                    f"{ours['duplicates_stored']} duplicates stored); {ours['mb_requests']} MusicBrainz + "
                    f"{ours['cover_requests']} cover requests; {ours['wall_s']} s; fetch's count = balance's: "
                    f"{ours['fetch_count_equals_balance']}; short only where the world "
                    f"lacks albums: {ours['short_but_world_has_them'] == []} "
                    f"({', '.join(ours['short_genres']) or 'none'})"
                ),
                "anchor": (
                    "-"
                    if anchor is None
                    else f"{anchor['stored_per_published']} stored per published ({anchor['stored']} / "
                    f"{anchor['published']}); {anchor['mb_requests']} requests; {anchor['wall_s']} s; short: "
                    f"{len(anchor['short_genres'])} genres, {len(anchor['short_but_world_has_them'])} of them "
                    "where the world has the albums"
                ),
                "ratio": None,
                "goal": "every genre with the albums balances after one fetch; <= 1.3 stored per published",
                "met": not ours["short_but_world_has_them"] and (ours["stored_per_published"] or 9) <= 1.3,
            }
        )
    out = BENCH / "results" / "bench_fetch_until_balanced.json"
    rows, results = keep_other_worlds(out, rows, results)
    doc = {
        "script": "benchmarks/bench_fetch_until_balanced.py",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "rows": rows,
        "runs": results,
    }
    out.write_text(json.dumps(C.repo_relative(doc), indent=2) + "\n")
    print(f"wrote {out}")


def keep_other_worlds(out: Path, rows: list[dict], results: list[dict]) -> tuple[list[dict], list[dict]]:
    """The earlier results of worlds not run this time stay, each row noting when it was measured."""
    if not out.exists():
        return rows, results
    old = json.loads(out.read_text())
    ran = {r["world"] for r in results}
    kept_rows = [r for r in old.get("rows", []) if r["comparison"].rsplit(" world ", 1)[-1] not in ran]
    for row in kept_rows:
        row.setdefault("notes", f"measured {old.get('date')}")
    kept_runs = [r for r in old.get("runs", []) if r["world"] not in ran]
    return rows + kept_rows, results + kept_runs


def machine() -> str:
    try:
        return C.machine()
    except Exception:  # the description is informative only
        return f"{os.cpu_count()} cores"


if __name__ == "__main__":
    main()
