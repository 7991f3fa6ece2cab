"""The study's defaults, named once (light: the CLI imports them before any heavy module)."""

import math

DEFAULT_PER_GENRE = 4000  # 15 genres x 4,000 covers
SPLITS = ("train", "validation", "test")
DEFAULT_RATIOS = (0.70, 0.15, 0.15)  # train, validation, test
DEFAULT_SHARD_ROWS = 2000  # rows per Parquet shard
MAX_PER_GENRE = 10_000_000  # far above any real harvest; bounds --per-genre and --artist-cap before SQLite sees them
MAX_SEED = 2**32 - 1  # numpy's seed range
# fetch --margin: fetch already counts what dedup and balance will keep, so this is only a small safety for what
# it cannot know (a larger `dedup --threshold`, covers added by a later fetch); see fetch.py
DEFAULT_MARGIN = 0.01

# Max pHash Hamming distance at which two covers count as near-duplicates. Measured with
# benchmarks/dedup_threshold.py (default simulator world, every cover at 500 px, pairs inside
# planted groups of re-encoded/resized/bordered/brightened copies as truth; pHash distances are
# always even). Seed 0, 7381 covers, 243 true pairs: threshold 8 -> precision 1.000, recall 0.992;
# 10 -> precision 0.988, recall 1.000; 12 -> 0.924, 1.000; 14 -> 0.453. Seed 1: 10 -> 0.983, 1.000.
# 10 is the smallest threshold that catches every planted copy (2 % borders need it); a missed
# copy would leak across splits, a false pair only drops one cover.
DEFAULT_THRESHOLD = 10

# Secondary release-group types fetch skips unless --include-secondary keeps them (covers of compilations, live
# albums and soundtracks say little about one genre).
DEFAULT_SKIPPED_SECONDARY = ("compilation", "live", "soundtrack")


def default_artist_cap(per_genre: int) -> int:
    """Balance's default --artist-cap: about 1 % of a genre, at least 2 covers per artist."""
    return max(2, math.ceil(per_genre / 100))
