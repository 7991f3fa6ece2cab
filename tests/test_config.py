"""Settings precedence and validation; MBID validation; MusicBrainz JSON parsing (pure)."""

import pytest

from equigen.core.config import load_settings
from equigen.core.errors import EquigenError
from equigen.core.mbids import is_mbid, require_mbid
from equigen.core.taxonomy import load_taxonomy
from equigen.harvest.musicbrainz import MalformedItem, keep, parse_release_group, tag_query


def test_flags_beat_environment_beat_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("EQUIGEN_CONCURRENCY", "7")
    monkeypatch.setenv("EQUIGEN_DATA_DIR", str(tmp_path / "env"))
    s = load_settings(musicbrainz_url="http://127.0.0.1:1")
    assert s.concurrency == 7 and s.data_dir == tmp_path / "env" and s.thumbnail == 500
    s = load_settings(concurrency=3, data_dir=tmp_path / "flag", musicbrainz_url="http://127.0.0.1:1")
    assert s.concurrency == 3 and s.data_dir == tmp_path / "flag"


def test_real_musicbrainz_requires_contact_and_user_agent_carries_it(monkeypatch):
    monkeypatch.delenv("EQUIGEN_CONTACT", raising=False)
    assert load_settings().contact is None  # offline verbs need no contact
    with pytest.raises(EquigenError, match="contact"):
        load_settings().for_musicbrainz()
    monkeypatch.setenv("EQUIGEN_CONTACT", "env@example.org")
    assert load_settings().for_musicbrainz().contact == "env@example.org"
    monkeypatch.delenv("EQUIGEN_CONTACT")
    s = load_settings(contact="me@example.org")
    assert s.user_agent.startswith("equigen/") and s.user_agent.endswith("( me@example.org )")


@pytest.mark.parametrize(
    "flags",
    [
        {"thumbnail": 300},
        {"musicbrainz_url": "ftp://x"},
        {"concurrency": 0},
        {"contact": "a b"},
        {"contact": "x@y", "mb_interval": 0.1},
    ],
)
def test_bad_settings_are_one_line_errors(flags):
    flags.setdefault("contact", "me@example.org")
    with pytest.raises(EquigenError) as err:
        load_settings(**flags).for_musicbrainz()
    assert "\n" not in str(err.value)


def test_bad_environment_value(monkeypatch):
    monkeypatch.setenv("EQUIGEN_CONCURRENCY", "many")
    with pytest.raises(EquigenError, match="EQUIGEN_CONCURRENCY"):
        load_settings(musicbrainz_url="http://127.0.0.1:1")


def test_mbid_validation():
    good = "89ad4ac3-39f7-470e-963a-56509c546377"
    assert is_mbid(good) and require_mbid(good) == good
    for bad in ["../../etc/passwd", good.upper(), good + "/x", "", None, 5]:
        assert not is_mbid(bad)
        with pytest.raises(EquigenError):
            require_mbid(bad)


def test_tag_query_quotes_and_escapes():
    assert tag_query("heavy metal") == 'tag:"heavy metal" AND primarytype:album'
    assert tag_query('a"b') == 'tag:"a\\"b" AND primarytype:album'


RAW = {
    "id": "0f8c8b4e-2d5a-4b2b-9a57-6e4f1f7a1c01",
    "title": "Paranoid",
    "primary-type": "Album",
    "first-release-date": "1970-09-18",
    "artist-credit": [
        {"name": "Black Sabbath", "artist": {"id": "5182c1d9-c7d2-4dad-afa0-ccfeada921a8", "name": "Black Sabbath"}}
    ],
    "tags": [{"count": 5, "name": "Heavy Metal"}, {"count": 1, "name": "rock"}],
}


def test_parse_release_group_resolves_genre():
    tax = load_taxonomy()
    g = parse_release_group(RAW, tax.label)
    assert (g.mbid, g.artist_name, g.genre, g.secondary_types) == (RAW["id"], "Black Sabbath", "Metal", ())
    assert g.tags == (("heavy metal", 5), ("rock", 1))
    assert (g.label_votes, g.label_confidence) == (6, round(5 / 6, 6))
    assert keep(g, ("compilation",))
    assert not keep(parse_release_group({**RAW, "secondary-types": ["Live"]}, tax.label), ("live",))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"id": "../../etc/passwd"}, "invalid release-group MBID"),
        ({"artist-credit": [{"name": "x", "artist": {"id": "nope", "name": "x"}}]}, "invalid artist MBID"),
        ({"tags": [{"count": "many", "name": "rock"}]}, "non-numeric count"),
        ({"tags": "rock"}, "tags is not a list"),
        ({"secondary-types": "Live"}, "secondary-types is not a list"),
    ],
)
def test_parse_rejects_malformed_items(bad, message):
    with pytest.raises(MalformedItem, match=message):
        parse_release_group({**RAW, **bad}, load_taxonomy().label)
    with pytest.raises(MalformedItem):
        parse_release_group(["not", "an", "object"], load_taxonomy().label)


def test_parse_caps_external_strings():
    long = {**RAW, "title": "x" * 100_000, "tags": [{"count": 1, "name": "rock" * 1000}] * 5000}
    g = parse_release_group(long, load_taxonomy().label)
    assert len(g.title) == 1000 and len(g.tags) == 500 and len(g.tags[0][0]) == 200
