"""The SQLite catalog in the data folder: schema and typed accessors. The only module that writes SQL.

WAL mode, one transaction per logical step (a discovery page and its offset; a cover's result),
so a kill at any moment leaves a consistent catalog that the next run resumes from.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from equigen.core.errors import EquigenError
from equigen.core.records import CoverResult, ReleaseGroup
from equigen.core.taxonomy import Taxonomy, load_taxonomy, taxonomy_from_text

SCHEMA_VERSION = 2
# v2: label evidence (label_votes, label_confidence), discovery order (seq), the fetch plan.

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS release_groups (
    mbid TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    primary_type TEXT,
    secondary_types TEXT NOT NULL DEFAULT '[]',   -- JSON list
    first_release_date TEXT,
    artist_mbid TEXT,
    artist_name TEXT,
    tags TEXT NOT NULL DEFAULT '[]',              -- JSON list of [name, count]
    genre TEXT NOT NULL,                          -- a genre name, 'ambiguous' or 'unlabelled'
    found_via TEXT,                               -- 'genre/tag' that first found it
    discovered_at REAL NOT NULL,
    label_votes INTEGER,                          -- genre votes over every mapped tag
    label_confidence REAL,                        -- the leading genre's share of label_votes
    seq INTEGER                                   -- discovery order: fetch downloads in this order
);
CREATE INDEX IF NOT EXISTS rg_genre ON release_groups(genre);
CREATE TABLE IF NOT EXISTS discovery (
    genre TEXT NOT NULL,
    tag TEXT NOT NULL,
    next_offset INTEGER NOT NULL DEFAULT 0,
    total INTEGER,                                -- MusicBrainz 'count' for the query
    exhausted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (genre, tag)
);
CREATE TABLE IF NOT EXISTS covers (
    mbid TEXT PRIMARY KEY REFERENCES release_groups(mbid),
    status TEXT NOT NULL DEFAULT 'pending',       -- pending | ok | no_art | bad_image | refused | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    error TEXT,
    sha256 TEXT,
    phash TEXT,                                   -- 16 hex digits (64-bit pHash)
    width INTEGER,
    height INTEGER,
    bytes INTEGER,
    format TEXT,
    path TEXT,                                    -- relative to the data folder
    source_url TEXT,
    updated_at REAL,
    planned_round INTEGER                         -- the fetch round that chose to try it (NULL: not yet)
);
CREATE INDEX IF NOT EXISTS covers_status ON covers(status);
CREATE TABLE IF NOT EXISTS clusters (
    mbid TEXT PRIMARY KEY REFERENCES covers(mbid),
    cluster_id INTEGER NOT NULL,
    is_canonical INTEGER NOT NULL,
    conflict INTEGER NOT NULL DEFAULT 0           -- cluster members carry different genres
);
CREATE TABLE IF NOT EXISTS fetch_plan (
    genre TEXT PRIMARY KEY,
    attempt_upto INTEGER NOT NULL                 -- this round: try the first N eligible candidates
);
CREATE TABLE IF NOT EXISTS dump_candidates (     -- labelled albums read from a JSON dump (fetch --from-dump)
    mbid TEXT PRIMARY KEY,
    genre TEXT NOT NULL,
    rank INTEGER NOT NULL,                        -- the seeded order fetch takes a genre's candidates in
    title TEXT NOT NULL,
    primary_type TEXT,
    secondary_types TEXT NOT NULL,                -- JSON list
    first_release_date TEXT,
    artist_mbid TEXT,
    artist_name TEXT,
    tags TEXT NOT NULL,                           -- JSON list of [name, count]
    label_votes INTEGER,
    label_confidence REAL,
    promoted INTEGER NOT NULL DEFAULT 0           -- 1: now a release group of the catalog
);
CREATE INDEX IF NOT EXISTS dump_next ON dump_candidates(genre, promoted, rank);
CREATE TABLE IF NOT EXISTS selection (
    mbid TEXT PRIMARY KEY REFERENCES covers(mbid),
    genre TEXT NOT NULL,
    split TEXT                                    -- train | validation | test, set by `split`
);
"""

POST_MIGRATION = "CREATE INDEX IF NOT EXISTS rg_seq ON release_groups(genre, seq)"
MIGRATE_1_TO_2 = (
    "ALTER TABLE release_groups ADD COLUMN label_votes INTEGER",
    "ALTER TABLE release_groups ADD COLUMN label_confidence REAL",
    "ALTER TABLE release_groups ADD COLUMN seq INTEGER",
    "UPDATE release_groups SET seq = rowid",
    "ALTER TABLE covers ADD COLUMN planned_round INTEGER",
)

SQL_CHUNK = 900  # values bound per IN (...): under SQLite's oldest limit of 999 variables


class Catalog:
    """Open (and create or migrate) the catalog at `path`."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            # 64 MB of page cache (SQLite's default is 2 MB): a dump's 500,000+ candidates go in 9 % faster
            self.conn.execute("PRAGMA cache_size=-65536")
            self.conn.execute("PRAGMA foreign_keys=ON")
            with self.transaction():
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                self.conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                stored = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
                version = int(stored) if str(stored).isdigit() else -1
                if version < 1:
                    raise sqlite3.DatabaseError(f"damaged schema_version {str(stored)[:20]!r}")
                if version == 1:
                    for stmt in MIGRATE_1_TO_2:
                        self.conn.execute(stmt)
                    self.conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
                if version <= SCHEMA_VERSION:
                    self.conn.execute(POST_MIGRATION)
        except sqlite3.DatabaseError as exc:
            raise EquigenError(f"cannot open catalog {self.path}: {exc}") from None
        except OSError as exc:
            raise EquigenError(f"cannot create catalog in {self.path.parent}: {exc.strerror or exc}") from None
        if version > SCHEMA_VERSION:
            raise EquigenError(f"catalog {self.path} was written by a newer equigen (schema {version})")

    def close(self) -> None:
        self.conn.close()

    @classmethod
    def existing(cls, path: Path | str) -> Catalog:
        """Open a catalog a fetch already wrote; a one-line error when there is none."""
        if not Path(path).is_file():
            raise EquigenError(f"no catalog at {path}: run `equigen fetch` first")
        return cls(path)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # --- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- the taxonomy the catalog was harvested with ------------------------------------------
    def remember_taxonomy(self, taxonomy: Taxonomy | None) -> None:
        """Store a --taxonomy file's text with the catalog; None: the built-in one (which follows upgrades)."""
        text = taxonomy.text if taxonomy is not None else ""
        if self.get_meta("taxonomy_toml", "") != text:
            self.set_meta("taxonomy_toml", text)

    def taxonomy(self, path: Path | None = None) -> Taxonomy:
        """The taxonomy to label this catalog with: the one it was harvested with (fetch stores it), or `path`.

        A --taxonomy that labels differently from the catalog's is refused: its labels came from the other one,
        and only `fetch --taxonomy` relabels them. A catalog from before taxonomies were stored uses `path` or the
        built-in one, as it always did.
        """
        stored_text = self.get_meta("taxonomy_toml")
        stored = taxonomy_from_text(stored_text, f"the taxonomy stored in {self.path}") if stored_text else None
        if path is None:
            return stored or load_taxonomy(None)
        given = load_taxonomy(path)
        if stored is not None and given.fingerprint() != stored.fingerprint():
            raise EquigenError(
                f"this catalog was harvested with another taxonomy than {path}: run `equigen fetch --taxonomy "
                f"{path}` first to relabel it, or leave --taxonomy out to use the catalog's own"
            )
        return given

    # --- discovery ------------------------------------------------------------------------
    def ensure_discovery_rows(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self.transaction():
            self.conn.executemany("INSERT OR IGNORE INTO discovery(genre, tag) VALUES (?, ?)", list(pairs))

    def discovery_progress(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT genre, tag, next_offset, total, exhausted FROM discovery", self.conn)

    def record_page(
        self, genre: str, tag: str, groups: Sequence[ReleaseGroup], next_offset: int, total: int, exhausted: bool
    ) -> list[tuple[ReleaseGroup, int]]:
        """Store one search page and the paging cursor in one transaction; return the new groups with their seq."""
        with self.transaction():
            new = self._insert_groups(groups, f"{genre}/{tag}")
            self.conn.execute(
                "UPDATE discovery SET next_offset = ?, total = ?, exhausted = ? WHERE genre = ? AND tag = ?",
                (next_offset, total, int(exhausted), genre, tag),
            )
        return new

    def known_mbids(self, mbids: Sequence[str]) -> set[str]:
        """Which of these release groups the catalog holds already."""
        return {row[0] for row in self._select_in("SELECT mbid FROM release_groups WHERE mbid IN ({})", list(mbids))}

    def has_release_groups(self) -> bool:
        """Whether any release group was catalogued (by a fetch or a manifest)."""
        return self.conn.execute("SELECT 1 FROM release_groups LIMIT 1").fetchone() is not None

    def stored_tags(self) -> Iterator[str]:
        """Every release group's MusicBrainz tags as stored (JSON text of [name, votes] pairs), one at a time."""
        for (tags_json,) in self.conn.execute("SELECT tags FROM release_groups"):
            yield tags_json

    def _select_in(self, sql: str, values: Sequence, before: Sequence = ()) -> list[tuple]:
        """Rows of `sql` (one `IN ({})`) over all `values`, in chunks SQLite can bind: a 250,000-row manifest
        would otherwise bind more variables than SQLite allows ("too many SQL variables")."""
        rows: list[tuple] = []
        for i in range(0, len(values), SQL_CHUNK):
            chunk = values[i : i + SQL_CHUNK]
            rows += self.conn.execute(sql.format(",".join("?" * len(chunk))), [*before, *chunk]).fetchall()
        return rows

    def add_release_groups(self, groups: Sequence[ReleaseGroup], found_via: str) -> None:
        """Insert release groups (and pending covers) outside tag paging, e.g. from a manifest."""
        with self.transaction():
            self._insert_groups(groups, found_via)

    def _insert_groups(self, groups: Sequence[ReleaseGroup], found_via: str) -> list[tuple[ReleaseGroup, int]]:
        """New release groups and their pending covers (inside the caller's transaction); the new ones with seq."""
        now = time.time()
        before = self.conn.total_changes
        seq = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM release_groups").fetchone()[0]
        self.conn.executemany(
            "INSERT OR IGNORE INTO release_groups(mbid, title, primary_type, secondary_types, first_release_date,"
            " artist_mbid, artist_name, tags, genre, found_via, discovered_at, label_votes, label_confidence, seq)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (g.mbid, *_stored_fields(g), g.genre, found_via, now, g.label_votes, g.label_confidence, seq + i)
                for i, g in enumerate(groups, 1)
            ],
        )
        if self.conn.total_changes == before:
            new = []
        else:
            stored = dict(
                self._select_in(
                    "SELECT mbid, seq FROM release_groups WHERE seq > ? AND mbid IN ({})",
                    [g.mbid for g in groups],
                    before=[seq],
                )
            )
            unique = {g.mbid: g for g in reversed(groups)}  # a page may list an MBID twice: the first one counts
            new = sorted(((g, stored[m]) for m, g in unique.items() if m in stored), key=lambda pair: pair[1])
        self.conn.executemany(
            "INSERT OR IGNORE INTO covers(mbid, status, updated_at) VALUES (?, 'pending', ?)",
            [(g.mbid, now) for g in groups],
        )
        return new

    def relabel(self, label) -> int:
        """Re-resolve every discovered release group's label from its stored tags (a new taxonomy).

        `label(tags)` -> Label. Rows a manifest published keep their published label. When any label
        changes, clusters, the selection and the fetch plan are dropped: they were decided on old labels.
        Returns how many release groups changed genre.
        """
        rows = self.conn.execute(
            "SELECT mbid, tags, genre, label_votes, label_confidence FROM release_groups"
            " WHERE found_via IS NULL OR found_via NOT LIKE 'manifest:%'"
        ).fetchall()
        updates, changed = [], 0
        for mbid, tags, genre, votes, confidence in rows:
            try:
                pairs = [(str(n), int(c)) for n, c in json.loads(tags)]
            except (ValueError, TypeError):
                pairs = []
            verdict = label(pairs)
            new_conf = round(verdict.confidence, 6)
            if (verdict.genre, verdict.votes, new_conf) != (genre, votes, confidence):
                updates.append((verdict.genre, verdict.votes, new_conf, mbid))
                changed += verdict.genre != genre
        with self.transaction():
            self.conn.executemany(
                "UPDATE release_groups SET genre = ?, label_votes = ?, label_confidence = ? WHERE mbid = ?", updates
            )
            if changed:
                self.conn.execute("DELETE FROM selection")
                self.conn.execute("DELETE FROM clusters")
                self.conn.execute("DELETE FROM fetch_plan")
                self.conn.execute("UPDATE covers SET planned_round = NULL WHERE status = 'pending'")
        return changed

    # --- dump candidates (fetch --from-dump; harvest/dump.py) ----------------------------------
    def dump_state(self) -> dict:
        """The stored ingest of a dump: {"key", "done", "counts"} ({} when none)."""
        try:
            state = json.loads(self.get_meta("dump_ingest", "{}") or "{}")
        except ValueError:
            return {}
        return state if isinstance(state, dict) else {}

    def reset_dump(self, key: str) -> None:
        """Start the ingest of another dump (or seed, filter, taxonomy): its candidates replace the stored ones.
        Candidates already promoted stay release groups of the catalog."""
        with self.transaction():
            self.conn.execute("DELETE FROM dump_candidates")
            self.conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('dump_ingest', ?)",
                (json.dumps({"key": key, "done": False, "counts": {}}),),
            )

    def add_dump_candidates(self, rows: Sequence[tuple[ReleaseGroup, int]], state: str) -> None:
        """One batch of (release group, rank) and the ingest's state after it, in one transaction."""
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO dump_candidates(mbid, genre, rank, title, primary_type, secondary_types,"
                " first_release_date, artist_mbid, artist_name, tags, label_votes, label_confidence)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(g.mbid, g.genre, rank, *_stored_fields(g), g.label_votes, g.label_confidence) for g, rank in rows],
            )
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('dump_ingest', ?)", (state,))

    def promote_dump_candidates(self, genre: str, limit: int, found_via: str) -> list[tuple[ReleaseGroup, int]]:
        """The next `limit` candidates of `genre` in rank order become release groups (with pending covers), in
        one transaction each batch; returns the new ones with their seq ([] when the genre has none left).
        Candidates a search already catalogued are passed over."""
        while True:
            rows = self.conn.execute(
                "SELECT mbid, title, primary_type, secondary_types, first_release_date, artist_mbid, artist_name,"
                " tags, genre, label_votes, label_confidence FROM dump_candidates"
                " WHERE genre = ? AND promoted = 0 ORDER BY rank LIMIT ?",
                (genre, limit),
            ).fetchall()
            if not rows:
                return []
            groups = [
                ReleaseGroup(
                    mbid=r[0],
                    title=r[1],
                    primary_type=r[2],
                    secondary_types=tuple(json.loads(r[3])),
                    first_release_date=r[4],
                    artist_mbid=r[5],
                    artist_name=r[6],
                    tags=tuple((str(n), int(c)) for n, c in json.loads(r[7])),
                    genre=r[8],
                    label_votes=r[9],
                    label_confidence=r[10],
                )
                for r in rows
            ]
            with self.transaction():
                new = self._insert_groups(groups, found_via)
                self.conn.executemany(
                    "UPDATE dump_candidates SET promoted = 1 WHERE mbid = ?", [(g.mbid,) for g in groups]
                )
            if new:
                return new

    def dump_remaining(self, genres: Sequence[str]) -> dict[str, int]:
        """Candidates not yet promoted, per genre of `genres`."""
        genres = list(genres)
        marks = ",".join("?" * len(genres))
        sql = f"SELECT genre, COUNT(*) FROM dump_candidates WHERE promoted = 0 AND genre IN ({marks}) GROUP BY genre"
        found = dict(self.conn.execute(sql, genres).fetchall())
        return {g: int(found.get(g, 0)) for g in genres}

    # --- the fetch plan (see planning.py) -------------------------------------------------
    def planning_rows(self, genres: Sequence[str]) -> pd.DataFrame:
        """Every release group of `genres` with its cover's state, and every ok cover of any other genre (dedup
        clusters them all: one can be the canonical copy of a target genre's cover): the input of the fetch plan."""
        genres = list(genres)
        frame = pd.read_sql_query(
            "SELECT r.mbid, r.genre, r.artist_mbid, r.label_confidence, r.seq, r.first_release_date, c.status,"
            " c.sha256, c.phash, c.width, c.height, c.planned_round FROM release_groups r JOIN covers c USING (mbid)"
            f" WHERE r.genre IN ({','.join('?' * len(genres))}) OR c.status = 'ok' ORDER BY r.seq",
            self.conn,
            params=genres,
        )
        for column in ("label_confidence", "planned_round", "width", "height"):  # all-NULL: objects otherwise
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
        return frame

    def load_plan(self) -> tuple[int, dict[str, int], str | None, bool]:
        """(round, quota per genre, plan key, round finished) of the stored fetch plan."""
        quota = dict(self.conn.execute("SELECT genre, attempt_upto FROM fetch_plan").fetchall())
        return (
            int(self.get_meta("fetch_round", "0")),
            quota,
            self.get_meta("fetch_plan_key"),
            self.get_meta("fetch_round_done", "0") == self.get_meta("fetch_round", "0"),
        )

    def start_round(self, round_no: int, quota: dict[str, int], key: str) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM fetch_plan")
            self.conn.executemany("INSERT INTO fetch_plan(genre, attempt_upto) VALUES (?, ?)", list(quota.items()))
            for k, v in (("fetch_round", str(round_no)), ("fetch_plan_key", key)):
                self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (k, v))

    def finish_round(self, round_no: int) -> None:
        self.set_meta("fetch_round_done", str(round_no))

    def mark_planned(self, mbids: Sequence[str], round_no: int) -> None:
        with self.transaction():
            self.conn.executemany("UPDATE covers SET planned_round = ? WHERE mbid = ?", [(round_no, m) for m in mbids])

    def reopen_unfinished(self) -> None:
        """Before a fetch with a new plan: failed covers get another chance, unstarted plans are dropped."""
        with self.transaction():
            self.conn.execute("UPDATE covers SET status = 'pending', planned_round = NULL WHERE status = 'failed'")
            self.conn.execute("UPDATE covers SET planned_round = NULL WHERE status = 'pending'")

    def planned_pending(self, round_no: int) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT c.mbid FROM covers c JOIN release_groups r USING (mbid)"
                " WHERE c.planned_round = ? AND c.status = 'pending' ORDER BY r.seq",
                (round_no,),
            )
        ]

    # --- covers ---------------------------------------------------------------------------
    def covers_to_fetch(self, genres: Iterable[str] | None = None) -> list[str]:
        """MBIDs whose cover is pending or failed (failed ones get another run's attempts)."""
        sql = "SELECT c.mbid FROM covers c JOIN release_groups r USING (mbid) WHERE c.status IN ('pending', 'failed')"
        args: list = []
        if genres is not None:
            genres = list(genres)
            sql += f" AND r.genre IN ({','.join('?' * len(genres))})"
            args = genres
        return [row[0] for row in self.conn.execute(sql + " ORDER BY c.mbid", args)]

    def record_covers(self, results: Sequence[tuple[CoverResult, int]]) -> None:
        """Several cover results in one transaction (the downloader batches for speed)."""
        now = time.time()
        with self.transaction():
            self.conn.executemany(
                "UPDATE covers SET status=?, attempts=attempts+?, http_status=?, error=?, sha256=?, phash=?,"
                " width=?, height=?, bytes=?, format=?, path=?, source_url=?, updated_at=? WHERE mbid=?",
                [
                    (
                        r.status,
                        a,
                        r.http_status,
                        r.error,
                        r.sha256,
                        r.phash,
                        r.width,
                        r.height,
                        r.bytes,
                        r.format,
                        r.path,
                        r.source_url,
                        now,
                        r.mbid,
                    )
                    for r, a in results
                ],
            )

    def status_table(self) -> pd.DataFrame:
        """Per resolved genre: candidates and cover statuses."""
        return pd.read_sql_query(
            "SELECT r.genre AS genre, c.status AS status, COUNT(*) AS n FROM release_groups r"
            " JOIN covers c USING (mbid) GROUP BY r.genre, c.status",
            self.conn,
        )

    def covers_frame(self, status: str | None = "ok") -> pd.DataFrame:
        """One row per cover joined with its release group: the input of dedup, balance and split."""
        sql = (
            "SELECT c.mbid, r.title, r.primary_type, r.secondary_types, r.first_release_date, r.artist_mbid,"
            " r.artist_name, r.tags, r.genre, r.label_votes, r.label_confidence, r.seq,"
            " c.status, c.attempts, c.http_status, c.error, c.sha256, c.phash,"
            " c.width, c.height, c.bytes, c.format, c.path, c.source_url"
            " FROM covers c JOIN release_groups r USING (mbid)"
        )
        args: tuple = ()
        if status is not None:
            sql += " WHERE c.status = ?"
            args = (status,)
        return pd.read_sql_query(sql + " ORDER BY c.mbid", self.conn, params=args)

    # --- curation results -----------------------------------------------------------------
    def replace_clusters(self, rows: pd.DataFrame) -> None:
        """rows: mbid, cluster_id, is_canonical, conflict (one row per ok cover)."""
        with self.transaction():
            self.conn.execute("DELETE FROM selection")  # a new clustering invalidates the selection
            self.conn.execute("DELETE FROM clusters")
            self.conn.executemany(
                "INSERT INTO clusters(mbid, cluster_id, is_canonical, conflict) VALUES (?,?,?,?)",
                [
                    (str(m), int(c), int(k), int(x))
                    for m, c, k, x in rows[["mbid", "cluster_id", "is_canonical", "conflict"]].itertuples(index=False)
                ],
            )

    def clusters_frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT mbid, cluster_id, is_canonical, conflict FROM clusters", self.conn)

    def replace_selection(self, rows: pd.DataFrame) -> None:
        """rows: mbid, genre (the balanced selection; splits are cleared)."""
        with self.transaction():
            self.conn.execute("DELETE FROM selection")
            self.conn.executemany(
                "INSERT INTO selection(mbid, genre, split) VALUES (?,?,NULL)",
                [(str(m), str(g)) for m, g in rows[["mbid", "genre"]].itertuples(index=False)],
            )

    def set_splits(self, rows: pd.DataFrame) -> None:
        """rows: mbid, split."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE selection SET split = ? WHERE mbid = ?",
                [(str(s), str(m)) for m, s in rows[["mbid", "split"]].itertuples(index=False)],
            )

    def selection_frame(self) -> pd.DataFrame:
        """The selection joined with covers, release groups and clusters."""
        return pd.read_sql_query(
            "SELECT s.mbid, s.genre, s.split, r.title, r.first_release_date, r.artist_mbid, r.artist_name,"
            " r.label_votes, r.label_confidence,"
            " c.sha256, c.phash, c.width, c.height, c.bytes, c.format, c.path, c.source_url,"
            " k.cluster_id, k.is_canonical"
            " FROM selection s JOIN covers c USING (mbid) JOIN release_groups r USING (mbid)"
            " LEFT JOIN clusters k USING (mbid) ORDER BY s.mbid",
            self.conn,
        )


def _stored_fields(g: ReleaseGroup) -> tuple:
    """A release group's descriptive columns as both release_groups and dump_candidates store them, in the order
    (title, primary_type, secondary_types, first_release_date, artist_mbid, artist_name, tags)."""
    return (
        g.title,
        g.primary_type,
        json.dumps(list(g.secondary_types)),
        g.first_release_date,
        g.artist_mbid,
        g.artist_name,
        json.dumps([list(t) for t in g.tags]),
    )
