"""The study's defaults, named once (light: the CLI imports them before any heavy module)."""

DEFAULT_PER_GENRE = 4000  # 15 genres x 4,000 covers
SPLITS = ("train", "validation", "test")
DEFAULT_RATIOS = (0.70, 0.15, 0.15)  # train, validation, test
DEFAULT_SHARD_ROWS = 2000  # rows per Parquet shard
MAX_PER_GENRE = 10_000_000  # far above any real harvest; bounds --per-genre and --artist-cap before SQLite sees them
MAX_SEED = 2**32 - 1  # numpy's seed range
# fetch --margin: fetch already counts what dedup and balance will keep, so this is only a small safety for what
# it cannot know (a larger `dedup --threshold`, covers added by a later fetch); see fetch.py
DEFAULT_MARGIN = 0.01
