"""Render benchmarks/RESULTS.md's table from benchmarks/results/*.json (one file per benchmark script).

    python benchmarks/make_results.py

The table sits between the TABLE markers in RESULTS.md; the notes around it are kept as written.
"""

from __future__ import annotations

import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = [
    "bench_download",
    "bench_phash",
    "bench_near_dup",
    "bench_split",
    "bench_loader",
    "bench_train_rss",
    "bench_dedup_quality",
]
START, END = "<!-- TABLE:START (benchmarks/make_results.py) -->", "<!-- TABLE:END -->"


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table() -> str:
    docs = {p.stem: json.loads(p.read_text()) for p in (BENCH / "results").glob("*.json")}
    docs = {k: d for k, d in docs.items() if isinstance(d, dict) and "rows" in d and "machine" in d}  # our format only
    names = [n for n in ORDER if n in docs] + sorted(set(docs) - set(ORDER))
    lines = [
        "| # | comparison | ours | anchor | ratio | goal | met? | machine | date | script |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    k = 0
    for name in names:
        doc = docs[name]
        busy = doc.get("machine_busy_before")
        machine = doc["machine"] + (f" ({busy:.0%} busy with other work before the run)" if busy and busy > 0.1 else "")
        for row in doc["rows"]:
            k += 1
            met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
            ratio = "-" if row["ratio"] is None else f"{row['ratio']}x"
            ours = row["ours"] + (f" — {row['notes']}" if row.get("notes") else "")
            lines.append(
                f"| {k} | {cell(row['comparison'])} | {cell(ours)} | {cell(row['anchor'])} | {ratio} | "
                f"{cell(row['goal'])} | {met} | {cell(machine)} | {doc['date']} | `{doc['script']}` |"
            )
    return "\n".join(lines)


def main() -> None:
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else f"# Benchmark results\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{START}\n{table()}\n{END}{tail}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
