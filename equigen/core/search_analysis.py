"""How MusicBrainz's search server analyses the `tag` field: the client uses it to know which searches a
broader one already covered, and the simulator's tag search tokenizes like it.

The release-group core (metabrainz/mbsssss release-group/conf/schema.xml) indexes `tag` as
`text_mult` (common/fieldtypes.xml): a char filter (common/mapping-MBCharEquivToChar.txt), then
metabrainz/mb-solr's MusicbrainzTokenizer (MusicbrainzTokenizerImpl.jflex),
MusicbrainzTokenizerFilter, MusicbrainzWordDelimiterGraphFilter (split on spaces only), then
lower-casing and ICU folding. Every tag value is analysed on its own (positionIncrementGap=1, so
a phrase never spans two tags), and a quoted query value is analysed the same way into a phrase.

What this gives, e.g.: "Heavy-Metal" -> heavy metal; "hip-hop" -> hip hop; "r&b" -> randb (the
char filter maps "&" to "and" *before* tokenizing, so "R&B" = "randb" but "r and b" and "rnb"
are other tokens); "drum & bass" -> drum and bass; "rock 'n' roll" -> rock n roll;
"rock'n'roll" -> one token rock'n'roll; "children's music" -> children music;
"U.S.A." -> usa; "2-step" -> one token 2-step; "Électronique" -> electronique.

Left out: the Katakana->Hiragana and Traditional->Simplified ICU transforms, the phonetic-extension
letters of the mapping file, JFlex's exact Unicode 3.0 letter tables, and the 255-character
token limit.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# common/mapping-MBCharEquivToChar.txt (the entries that matter for tags)
_CHAR_MAP = str.maketrans(
    {
        "\u3000": " ",
        "&": "and",
        "\u2019": "'",
        "\u2010": "-",
        "\u2013": "-",
        "\u2012": "-",
        "\u2014": "-",
        "\u2212": "-",
        "_": "-",
        "\u0131": "i",
        "\u05f3": "'",
        "\u05be": "-",
        "\u05f4": '"',
        "\u00c0": "A",
    }
)
_WHITESPACE = re.compile(r"[ \r\n\t\f]+")  # the JFlex WHITESPACE class; everything else is a token char


def _is_cj(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3100 <= o <= 0x312F
        or 0x3300 <= o <= 0x337F
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
    )


def _is_letter(ch: str) -> bool:
    return ch.isalpha() and not _is_cj(ch)


def _is_alnum(ch: str) -> bool:  # ALPHANUM = LETTER | THAI | [:digit:]
    return _is_letter(ch) or ch.isdecimal() or "\u0e00" <= ch <= "\u0e59"


_NUM_SEP = re.compile(r"[_\-/.,]")


def _token_type(seg: str) -> str:
    """The JFlex rule that wins for a whitespace- and CJ-free run (longest match, then rule order)."""
    kinds = {_is_alnum(c) for c in seg}
    if kinds == {True}:
        return "ALPHANUM"
    if kinds == {False}:
        return "CONTROLANDPUNCTUATION"
    # Mixed: ALPHANUMANDPUNCTUATION matches the whole run, so only rules matching it whole compete.
    parts = seg.split(".")
    letters = parts[:-1] if parts[-1] == "" else parts
    if len(letters) >= 2 and all(len(p) == 1 and _is_letter(p) for p in letters):
        return "ACRONYM"  # U.S.A. / U.S.A
    if len(parts) >= 2 and all(p and all(_is_alnum(c) for c in p) for p in parts):
        return "HOST"  # mp3.com
    quoted = seg.split("'")
    if len(quoted) >= 2 and all(p and all(_is_letter(c) for c in p) for p in quoted):
        return "APOSTROPHE"  # o'neil, rock'n'roll
    pieces = _NUM_SEP.split(seg)
    if len(pieces) >= 2 and all(p and all(_is_alnum(c) for c in p) for p in pieces):
        digits = [any(c.isdecimal() for c in p) for p in pieces]
        if all(digits[0::2]) or all(digits[1::2]):
            return "NUM"  # 2-step, 80s-pop: every other part has a digit
    return "ALPHANUMANDPUNCTUATION"


def _filter(text: str, kind: str) -> str:
    """MusicbrainzTokenizerFilter."""
    if kind == "APOSTROPHE" and len(text) >= 2 and text[-2] == "'" and text[-1] in "sS":
        return text[:-2]
    if kind == "ACRONYM":
        return text.replace(".", "")
    if kind == "ALPHANUMANDPUNCTUATION":
        return "".join("" if c == "'" else c if c.isalnum() else " " for c in text)
    return text


def _fold(token: str) -> str:
    """LowerCaseFilter + ICUFoldingFilter (approximately: NFKC casefold without diacritics)."""
    decomposed = unicodedata.normalize("NFKD", token.lower())
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return unicodedata.normalize("NFKC", stripped.casefold())


@lru_cache(maxsize=65536)
def mb_tokens(text: str) -> tuple[str, ...]:
    """The tokens MusicBrainz's search index holds for one tag value (or a quoted query value)."""
    out: list[str] = []
    for chunk in _WHITESPACE.split(text.translate(_CHAR_MAP)):
        seg = ""
        for ch in chunk + " ":  # CJ characters are tokens of their own
            if ch == " " or _is_cj(ch):
                if seg:
                    # MusicbrainzWordDelimiterGraphFilter splits on space characters only.
                    out += [w for w in re.split(r"\s+", _filter(seg, _token_type(seg))) if w]
                    seg = ""
                if ch != " ":
                    out.append(ch)
            else:
                seg += ch
    return tuple(t for t in (_fold(w) for w in out) if t)


def phrase_in(phrase: tuple[str, ...], tokens: tuple[str, ...]) -> bool:
    """True when `phrase` occurs contiguously in `tokens` (a Lucene phrase query with slop 0)."""
    n = len(phrase)
    if n == 0 or n > len(tokens):
        return False
    first = phrase[0]
    return any(tokens[i] == first and tokens[i : i + n] == phrase for i in range(len(tokens) - n + 1))
