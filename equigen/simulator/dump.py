"""The simulator's world as a MusicBrainz JSON data dump (`equigen simulate --write-dump FILE`).

MusicBrainz's JSON dumps (https://wiki.musicbrainz.org/Development/JSON_Data_Dumps) ship one tarball per
entity type; `release-group.tar.xz` holds `mbdump/release-group`, one release group a line as the ws/2
lookup shape with every inc the dump exports (aliases, annotation, artist credits, genres, rating,
relations, tags). The lines written here carry the fields a real line carries (tests/fixtures/dump/ keeps
real-shaped lines and says where they come from); the values are the world's, as its search answers give
them, so a fetch from this dump and a fetch by search label every release group the same way.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from equigen.core.errors import EquigenError
from equigen.core.options import check_seed
from equigen.core.taxonomy import normalize_tag
from equigen.simulator.server import release_group_json
from equigen.simulator.world import ReleaseGroup, World, WorldConfig, musicbrainz_genre_keys

DUMP_MEMBER = "mbdump/release-group"
_GENRE_NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")  # uuid.NAMESPACE_URL: stable synthetic ids


def dump_line(rg: ReleaseGroup) -> dict:
    """One release group as a JSON dump line: the ws/2 lookup shape with the dump's incs."""
    line = release_group_json(rg, search=False, inc=frozenset({"artist-credits", "tags"}))
    line["artist-credit"][0]["joinphrase"] = ""
    tags = line.get("tags", [])
    genre_keys = musicbrainz_genre_keys()
    line["genres"] = [
        {"count": t["count"], "disambiguation": "", "id": _genre_id(t["name"]), "name": t["name"]}
        for t in tags
        if normalize_tag(t["name"]) in genre_keys
    ]
    line["tags"] = tags
    line.update({"aliases": [], "annotation": None, "rating": {"value": None, "votes-count": 0}, "relations": []})
    return line


def _genre_id(name: str) -> str:
    """A stable made-up MBID for a genre name (real dumps carry MusicBrainz's genre MBIDs; nothing reads them)."""
    return str(uuid.uuid5(_GENRE_NAMESPACE, name))


def dump_lines(world: World) -> Iterator[bytes]:
    """Every release group of the world (albums or not, as a real dump), one UTF-8 JSON line each, by MBID."""
    for rg in sorted(world.release_groups, key=lambda r: r.mbid):
        yield json.dumps(dump_line(rg), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def write_dump(world: World, path: Path | str) -> int:
    """Write the world's release groups to `path`: a `.tar.xz` holding `mbdump/release-group` (as MusicBrainz
    publishes it) or, for any other name, the plain member file. Atomic (a temporary file renamed). Returns
    the number of lines."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise EquigenError(f"cannot write the dump {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            if path.name.endswith(".tar.xz"):
                count = _write_tar_xz(world, out)
            else:
                count = _write_lines(world, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _write_lines(world: World, out) -> int:
    count = 0
    for line in dump_lines(world):
        out.write(line)
        count += 1
    return count


def _write_tar_xz(world: World, out) -> int:
    """The member's size goes in its tar header before its bytes: the lines are spooled first."""
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as member:
        count = _write_lines(world, member)
        info = tarfile.TarInfo(DUMP_MEMBER)
        info.size = member.tell()
        member.seek(0)
        with tarfile.open(fileobj=out, mode="w|xz") as tar:
            readme = b"release-group JSON dump written by `equigen simulate --write-dump`\n"
            notice = tarfile.TarInfo("README")
            notice.size = len(readme)
            tar.addfile(notice, io.BytesIO(readme))
            tar.addfile(info, member)
    return count


def write_world_dump(path: Path | str, seed: int = 0, **knobs) -> int:
    """Build the world `equigen simulate` would serve (knobs: WorldConfig fields, None = default) and write its
    dump to `path`. Returns the number of lines."""
    check_seed(seed)
    world = World.build(WorldConfig(seed=seed, **{k: v for k, v in knobs.items() if v is not None}))
    return write_dump(world, path)
