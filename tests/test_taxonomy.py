"""Label resolution (pure) and taxonomy validation."""

import pytest

from equigen.errors import EquigenError
from equigen.taxonomy import AMBIGUOUS, UNLABELLED, load_taxonomy, parse_taxonomy, resolve_genre

MAP = {"heavy metal": "Metal", "death metal": "Metal", "rock": "Rock", "jazz": "Jazz"}


def test_default_taxonomy_has_fifteen_genres_with_tags():
    tax = load_taxonomy()
    assert len(tax.genres) == 15
    assert {"Metal", "New Age", "Rap (hip hop)"} <= set(tax.genres)
    assert all(tax.tags[g] for g in tax.genres)
    assert tax.genre_of_tag("Heavy Metal") == "Metal"


def test_votes_are_summed_per_genre():
    # 2 + 2 Metal beats 3 Rock: sums, not the single biggest tag
    assert resolve_genre([("heavy metal", 2), ("death metal", 2), ("rock", 3)], MAP, 0.8) == "Metal"


def test_close_runner_up_is_ambiguous_and_ratio_is_configurable():
    tags = [("rock", 5), ("jazz", 4)]
    assert resolve_genre(tags, MAP, 0.8) == AMBIGUOUS
    assert resolve_genre(tags, MAP, 0.9) == "Rock"


def test_unmapped_or_missing_tags_are_unlabelled():
    assert resolve_genre([], MAP) == UNLABELLED
    assert resolve_genre([("british", 9), ("seen live", 3)], MAP) == UNLABELLED
    assert resolve_genre([("rock", 0)], MAP) == UNLABELLED
    assert resolve_genre([("rock", 1)], MAP, min_votes=2) == UNLABELLED


def test_tag_case_and_space_do_not_matter():
    assert resolve_genre([(" Heavy Metal ", 1)], MAP) == "Metal"


@pytest.mark.parametrize(
    "text, message",
    [
        ("genres = 3", "needs a [genres"),
        ('[genres.A]\ntags = ["x"]\n[genres.B]\ntags = []', "has no tags"),
        ('[genres.A]\ntags = ["x"]\n[genres.B]\ntags = ["X"]', "claimed by both"),
        ('[genres.A]\ntags = ["x"]\n[genres.B]\ntags = [""]', "empty"),
        ('[genres.A]\ntags = ["x"]\n[genres.B]\ntags = ["y"]\n[resolution]\nambiguity_ratio = 2', "ambiguity_ratio"),
        ("[genres.A\n", "not valid TOML"),
    ],
)
def test_malformed_taxonomy_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "genres.toml"
    path.write_text(text)
    with pytest.raises(EquigenError) as err:
        load_taxonomy(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_taxonomy_file(tmp_path):
    with pytest.raises(EquigenError, match="not found"):
        load_taxonomy(tmp_path / "nope.toml")


def test_user_taxonomy_parses():
    tax = parse_taxonomy({"genres": {"A": {"tags": ["x", "y"]}, "B": {"tags": ["z"]}}})
    assert tax.genres == ("A", "B") and tax.resolve([("z", 3), ("x", 1)]) == "B"
