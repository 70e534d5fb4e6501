"""Choose among a site's candidate 8-bit encodings by how plausible the words of each reading are.

Windows-1252 and Windows-1250 decode almost any byte string, and restricted to those two a charset
detector calls both readings equally good on short files, so the readings are judged by their
words instead: a symbol inside a name (`£ukasz`, `Ma³gorzata`) is implausible, a name whose
letters belong to no one language (`Dvoøák`) is doubtful. When two readings stay plausible the
caller gets both, with the words they read differently, so that a person can choose.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Most word pairs an alternative carries: enough to recognise one's own names, few enough to show.
MAX_WORD_PAIRS = 10

# Non-ASCII letters of the languages written with Latin letters in the usual 8-bit code pages,
# lower case. Only their grouping matters: a word whose letters fit no single group is doubtful.
LANGUAGE_LETTERS: dict[str, frozenset[str]] = {name: frozenset(letters) for name, letters in {
    "French": "àâæçéèêëîïôœùûüÿ",
    "German": "äöüß",
    "Spanish": "áéíñóúü",
    "Portuguese": "áâãàçéêíóôõú",
    "Italian": "àèéìíîòóù",
    "Catalan": "àçèéíïòóúü",
    "Dutch": "áéëíïóöúü",
    "Danish and Norwegian": "åæéøó",
    "Swedish and Finnish": "åäéöšž",
    "Icelandic": "áðéíóúýþæö",
    "Irish": "áéíóú",
    "Welsh": "âêîôûŵŷéëï",
    "Polish": "ąćęłńóśźż",
    "Czech": "áčďéěíňóřšťúůýž",
    "Slovak": "áäčďéíĺľňóôŕšťúýž",
    "Slovenian, Croatian and Bosnian": "čćđšž",
    "Hungarian": "áéíóöőúüű",
    "Romanian": "ăâîșțşţ",
    "Albanian": "çë",
    "Turkish": "çğıöşü",
    "Estonian": "äõöüšž",
    "Latvian": "āčēģīķļņšūž",
    "Lithuanian": "ąčęėįšųūž",
    "Maltese": "àċèġħìòùż",
}.items()}

# A word's shape replaces each character by its kind, so that the rules below are regular
# expressions run in C over all words at once rather than Python loops over characters:
#   a b n  ASCII lower-case vowel, consonant, and n (which may precede an ordinal: Nº)
#   A B N  the same in upper case
#   e c    non-ASCII Latin lower-case vowel, consonant      E C  the same in upper case
#   o O    œ Œ                                               x    a letter of another script
#   0      digit        r  ª º        q  ¿ ¡        m  combining mark
#   s      symbol (£ ³ ¹ ¥ ¦ ˇ µ …)   k  control character or undecodable byte
#   .      anything else: punctuation, spaces (a line break, between words, stays one)
_LETTER = "aAbBnNeEcCoOx"
_IMPLAUSIBLE = re.compile("|".join((
    f"s(?=[{_LETTER}])|(?<=[{_LETTER}])s",  # a symbol touching a letter: £ukasz, Ma³gorzata
    "k",  # a control character: the C1 range of ISO-8859-1, or a byte the codec lacks
    f"(?<=[aAbBeEcCoOx])r|r(?=[{_LETTER}])",  # an ordinal inside a word, except after N (Nº)
    f"(?<=[{_LETTER}0])q",  # ¿ ¡ after a letter: Mo¿e
    "(?<=[aAeEoO])[oO]",  # œ after a vowel: Wiœniewska, Kwaœniewski (French: cœur, sœur, œil)
    "[abneco][ECO]|[eco][ABN]",  # lower case then upper case in a word: £ódŸ
    f"(?<![{_LETTER}])(?:[ECO][ABNECO]|[ABN][ECO])[abneco]",  # two capitals then lower: ŁUkasz
    "[abnABNeEcCoO]x|x[abnABNeEcCoO]",  # Latin and another script in one word
)))
_DOUBTFUL = re.compile(
    # œ between consonants or before one at the start: Polish ś read as Windows-1252 (Œliwa),
    # but also the rare French-Alsatian Rœderer, so only doubtful.
    f"(?<=[bBnNcC])[oO](?=[bBnNcC])|(?<![{_LETTER}])[oO](?=[bBnNcC])")

_ASCII_SHAPES = {
    **{ord(c): "." for c in map(chr, range(128))},
    **{ord(c): "0" for c in "0123456789"},
    **{ord(c): "a" for c in "aeiouy"}, **{ord(c): "A" for c in "AEIOUY"},
    **{ord(c): "b" for c in "bcdfghjklmpqrstvwxz"}, **{ord(c): "B" for c in "BCDFGHJKLMPQRSTVWXZ"},
    ord("n"): "n", ord("N"): "N", ord("\n"): "\n",
}
_ASCII_BUT_LINE_BREAKS = re.compile("[\x00-\x09\x0b-\x7f]+")
_ASCII_WORD_BYTES = b"0-9A-Za-z"
# Multi-byte codecs (Shift_JIS, GBK, Big5) use these as second bytes, so they stay inside a word.
_MULTIBYTE_WORD_BYTES = b"0-9\\x40-\\x7e"


class UndecodableFile(ValueError):
    """No candidate decodes the file; `failures` holds each candidate's codec and its error."""

    def __init__(self, failures: list[tuple[str, UnicodeDecodeError]]):
        super().__init__("no candidate encoding decodes the file")
        self.failures = failures


@dataclass
class Alternative:
    """Another plausible reading: its codec and the words it reads otherwise, as pairs of (the
    word as chosen, the word as this codec reads it), in the order of the file."""

    codec: str
    words: list[tuple[str, str]]


@dataclass
class Reading:
    """The chosen decoding of a file, with the other readings that stay plausible and differ."""

    text: str
    codec: str
    alternatives: list[Alternative] = field(default_factory=list)


@dataclass(frozen=True)
class Judgement:
    """What the words of one reading look like: how many are implausible, how many doubtful,
    and how many languages their letters need."""

    implausible: int
    doubtful: int
    languages: int


def is_plausible(word: str) -> bool:
    """False for a word no one would write, such as a symbol inside a name (`£ukasz`)."""
    return judge_words([word]).implausible == 0


def judge_words(words: Sequence[str]) -> Judgement:
    """Count the implausible and doubtful words (none may contain a line break) and the number
    of languages their non-ASCII letters need."""
    joined = "\n".join(words)
    shapes = joined.translate({ord(c): _shape(c) for c in set(joined)}).split("\n")
    extras = _ASCII_BUT_LINE_BREAKS.sub("", joined.lower()).split("\n")
    # Words of one shape with the same non-ASCII letters are judged alike, and there are far
    # fewer of those than words (Wiśniewska12 and Wiśniewska13 are one).
    implausible = doubtful = 0
    letters: set[str] = set()
    for (shape, extra), count in Counter(zip(shapes, extras, strict=True)).items():
        latin = _LATIN_LETTERS.intersection(extra)
        letters |= latin
        if _IMPLAUSIBLE.search(shape):
            implausible += count
        elif _DOUBTFUL.search(shape) or (latin and not _fits_one_language(frozenset(latin))):
            doubtful += count
    return Judgement(implausible, doubtful, _languages_needed(letters))


def choose_reading(data: bytes, candidates: Sequence[str]) -> Reading:
    """Decode `data` (which is not UTF-8) with the most plausible of `candidates`, listing the
    other candidates whose reading differs and is not clearly worse; ties keep the order given.
    Candidates that cannot decode the file are skipped; raises UndecodableFile when none can."""
    failures: list[tuple[str, UnicodeDecodeError]] = []
    texts: dict[str, str | None] = {}  # the codecs that decode the file; text if already made
    for codec in dict.fromkeys(candidates):
        chars = _byte_chars(codec)
        # A byte a single-byte codec lacks is found in C; only then is the file decoded, to
        # have the error to report.
        if chars is not None and not data.translate(None, _defined_bytes(codec)):
            texts[codec] = None
            continue
        try:
            texts[codec] = data.decode(codec)
        except UnicodeDecodeError as exc:
            failures.append((codec, exc))
    if not texts:
        raise UndecodableFile(failures)
    usable = list(texts)
    words = _differing_words(data, usable)
    if len(usable) == 1 or not words:
        return Reading(_text(data, usable[0], texts), usable[0])

    readings = {codec: _decode_words(words, codec) for codec in usable}
    judgements = {codec: judge_words(readings[codec]) for codec in usable}
    ranked = sorted(usable, key=lambda c: (
        judgements[c].implausible, judgements[c].doubtful, judgements[c].languages,
        usable.index(c)))
    chosen = ranked[0]
    # A reading with clearly more implausible words than the chosen one is wrong; one that is
    # only less coherent may still be right, so it stays on offer.
    tolerated = judgements[chosen].implausible + judgements[chosen].implausible // 2
    alternatives: list[Alternative] = []
    seen = {tuple(readings[chosen])}
    for codec in ranked[1:]:
        if judgements[codec].implausible > tolerated or tuple(readings[codec]) in seen:
            continue
        seen.add(tuple(readings[codec]))
        pairs = [(mine, theirs) for mine, theirs in zip(readings[chosen], readings[codec],
                                                        strict=True) if mine != theirs]
        alternatives.append(Alternative(codec, pairs[:MAX_WORD_PAIRS]))
    return Reading(_text(data, chosen, texts), chosen, alternatives)


def _text(data: bytes, codec: str, texts: dict[str, str | None]) -> str:
    text = texts[codec]
    return data.decode(codec) if text is None else text


def _differing_words(data: bytes, usable: list[str]) -> list[bytes]:
    """The distinct words of `data`, in file order, holding a byte the codecs read differently.

    A word is a run of ASCII letters and digits and non-ASCII bytes; cells, e-mail addresses and
    hyphenated names split into words at punctuation."""
    tables = [table for table in map(_byte_chars, usable) if table is not None]
    if len(tables) == len(usable):
        differing = bytes(b for b in range(128, 256) if len({t[b] for t in tables}) > 1)
        ascii_word = _ASCII_WORD_BYTES
    else:
        differing, ascii_word = bytes(range(128, 256)), _MULTIBYTE_WORD_BYTES
    if not differing or not data.translate(None, bytes(set(range(256)) - set(differing))):
        return []
    same = bytes(set(range(128, 256)) - set(differing))
    word = b"[" + ascii_word + b"\\x80-\\xff]"
    # A match starts on the byte before a word, so `re` skips to candidates in C, and the
    # possessive `*+` never backs off: each word is scanned once, linear in the size of the file.
    pattern = re.compile(b"[^" + ascii_word + b"\\x80-\\xff]([" + ascii_word + _byte_class(same)
                         + b"]*+[" + _byte_class(differing) + b"]" + word + b"*)")
    return list(dict.fromkeys(pattern.findall(b"\n" + data)))


def _decode_words(words: list[bytes], codec: str) -> list[str]:
    """Each word decoded on its own: one decode call for all, since no word holds a line break
    (unless a multi-byte codec swallows one while replacing a bad byte; then one call each)."""
    decoded = b"\n".join(words).decode(codec, errors="replace").split("\n")
    if len(decoded) != len(words):
        decoded = [word.decode(codec, errors="replace") for word in words]
    return decoded


def _byte_class(values: Iterable[int]) -> bytes:
    return b"".join(b"\\x%02x" % value for value in values)


@functools.lru_cache(maxsize=64)
def _byte_chars(codec: str) -> tuple[str | None, ...] | None:
    """The character of each byte (None where the codec lacks it) for a single-byte codec that
    reads ASCII as ASCII; None for any other codec."""
    chars: list[str | None] = []
    for value in range(256):
        decoder = codecs.getincrementaldecoder(codec)()
        try:
            char = decoder.decode(bytes([value]), final=False)
        except UnicodeDecodeError:
            chars.append(None)
            continue
        if len(char) != 1 or (value < 128 and char != chr(value)):
            return None
        chars.append(char)
    return tuple(chars)


@functools.lru_cache(maxsize=64)
def _defined_bytes(codec: str) -> bytes:
    chars = _byte_chars(codec)
    assert chars is not None
    return bytes(value for value, char in enumerate(chars) if char is not None)


@functools.lru_cache(maxsize=4096)
def _shape(char: str) -> str:
    """The kind of a character, as in the legend above `_IMPLAUSIBLE`."""
    if ord(char) < 128:
        return _ASCII_SHAPES[ord(char)]
    if char in "œŒ":
        return "o" if char == "œ" else "O"
    if char in "ªº":
        return "r"
    if char in "¿¡":
        return "q"
    category = unicodedata.category(char)
    if char in "µƒ" or category == "Lm":  # letters by category, but not in anyone's name
        return "s"
    if category in ("Ll", "Lu", "Lt") and unicodedata.name(char, "").startswith("LATIN "):
        base = unicodedata.normalize("NFD", char)[0]
        vowel = base in "aeiouyAEIOUY" or char in "æøÆØı"
        if category == "Ll":
            return "e" if vowel else "c"
        return "E" if vowel else "C"
    if category.startswith("L"):
        return "x"
    if category.startswith("M"):
        return "m"
    if category == "Nd":
        return "0"
    if category.startswith(("P", "Z")) or category == "Cf":
        return "."
    if category.startswith("C") or char == "\ufffd":
        return "k"
    return "s"


# Every lower-case Latin letter beyond ASCII that the code pages in question can produce.
_LATIN_LETTERS = frozenset(
    c for c in map(chr, range(0xC0, 0x250)) if _shape(c) in ("e", "c", "o"))


@functools.lru_cache(maxsize=4096)
def _fits_one_language(letters: frozenset[str]) -> bool:
    return any(letters <= language for language in LANGUAGE_LETTERS.values())


def _languages_needed(letters: set[str]) -> int:
    """How many languages (taken greedily) cover `letters`; a letter of none counts as one."""
    remaining, needed = set(letters), 0
    while remaining:
        best = max(LANGUAGE_LETTERS.values(), key=lambda language: len(language & remaining))
        if not best & remaining:
            return needed + len(remaining)
        remaining -= best
        needed += 1
    return needed
