"""De-identification of Chinese EHR notes: find PHI, then tag, mask or replace it by surrogates.

PHI types (``PHI_TYPES``): person names, resident ID numbers, phone numbers, MRN-like numbers
with their cue (住院号, 门诊号, 病案号, 床号 ...), dates, ages over 89, addresses, organisations
(hospitals, clinics, companies, schools), e-mails, URLs and IP addresses.

Example:
    >>> from ehrtext.text.deid import Deidentifier
    >>> d = Deidentifier()
    >>> d.deidentify("患者张伟，男，93岁，于2015年11月12日入院，电话13812345678。").text
    '患者[姓名]，男，[年龄]，于[日期]入院，电话[电话]。'

How it works (one note, in order):

1. The note is folded char for char (full-width ASCII to ASCII, whitespace variants to a
   space, the one-char punctuation variants of ``normalize.json``), so positions never move
   and every span is an offset into the text as given. (:func:`ehrtext.text.normalize` also
   deletes zero-width chars and collapses whitespace; that moves offsets and costs a third of
   the time budget, so it is not used here.)
2. Small detectors, each one class with one compiled scan over the note, propose spans:
   :class:`NumericDetector` (one combined regex over digit runs: IDs with a valid GB 11643
   check digit, phones, dates, ages), :class:`CueDetector` (住院号：…, 电话：…, 身份证号：…,
   年龄：…, 12床), :class:`NameDetector` (surname list + context cues such as 患者 / 姓名 / 医师 /
   主任 / 之子, a 1-2 char given name that must end where a terminator starts, and a stoplist
   of medical and common words), :class:`AddressDetector` (gazetteer names with their suffix,
   address cues, road + house number, then a chain of address components),
   :class:`OrgDetector` (…医院 / …卫生院 / …公司 ..., walking back to the start of the name) and
   :class:`WebDetector` (e-mail, URL). Overlapping spans are merged (the longest one names the
   type). For the shipped rules some scans are cut short without changing what they find: the
   combined numeric regex is tried only at digit runs that can start a match, a pattern that
   needs a word the note lacks is not run, and word lists are compiled as tries
   (tests/text/test_deid_speed.py compares each with the plain scan).
3. A strategy rewrites the spans: :class:`TagStrategy` (``[姓名]``), :class:`MaskStrategy`
   (same length, offsets preserved) or :class:`SurrogateStrategy` (consistent fake values per
   patient from a user secret; dates keep their format and move by a per-patient offset, phones
   keep their shape, resident IDs get a valid check digit).

All rules are data: ``corpora/rules/deid.json`` and the word lists ``corpora/dict/surnames.txt``
and ``corpora/dict/deid_*.txt``; ``corpora/dict/medical_words.txt`` adds its words to the name
stoplist when it is shipped. Nothing here logs, and no exception or repr carries note text.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from ehrtext.errors import InputError, ResourceError, describe_type
from ehrtext.resources import corpora_root, load_json

__all__ = [
    "PHI_TYPES",
    "AddressDetector",
    "CueDetector",
    "DeidResult",
    "DeidRules",
    "Deidentifier",
    "MaskStrategy",
    "NameDetector",
    "NumericDetector",
    "OrgDetector",
    "PHISpan",
    "Replacement",
    "SurrogateStrategy",
    "TagStrategy",
    "WebDetector",
    "id_check_digit",
    "is_valid_resident_id",
]

#: The PHI types, in the order used to break ties between overlapping spans of equal length.
PHI_TYPES: tuple[str, ...] = (
    "id_number",
    "phone",
    "mrn",
    "email",
    "url",
    "ip",
    "date",
    "age",
    "name",
    "org",
    "address",
)

STRATEGIES = ("tag", "mask", "surrogate")


# --------------------------------------------------------------------------------------------
# The 1:1 fold: full-width ASCII -> ASCII, whitespace variants -> ' ', and the single-char
# punctuation variants of normalize.json. Positions never move, so spans need no mapping.

_NUMPY_MIN_CHARS = 64


class _Fold:
    def __init__(self) -> None:
        table = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
        for c in [0x3000, 0x00A0, 0x202F, 0x205F, *range(0x2000, 0x200B)]:
            table[c] = 0x20
        data = load_json("rules", "normalize.json")
        punct = data.get("punctuation", {}) if isinstance(data, dict) else {}
        for k, v in punct.items():
            if isinstance(k, str) and isinstance(v, str) and len(k) == 1 and len(v) == 1:
                table[ord(k)] = ord(v)
        for k, v in list(table.items()):  # close the table: a target that maps on maps too
            table[k] = table.get(v, v)
        self.table = table
        self._lut: Any = None

    def __call__(self, text: str) -> str:
        if text.isascii():
            return text
        if len(text) >= _NUMPY_MIN_CHARS:
            try:
                import numpy as np
            except ImportError:  # pragma: no cover - numpy is a dependency
                return text.translate(self.table)
            lut = self._lut
            if lut is None:
                lut = np.arange(0x110000, dtype=np.uint32)
                keys = np.fromiter(self.table.keys(), dtype=np.int64, count=len(self.table))
                lut[keys] = np.fromiter(self.table.values(), dtype=np.uint32, count=len(self.table))
                self._lut = lut
            codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            return lut[codes].tobytes().decode("utf-32-le", "surrogatepass")
        return text.translate(self.table)


@lru_cache(maxsize=1)
def _fold() -> _Fold:
    return _Fold()


# --------------------------------------------------------------------------------------------
# Resident ID numbers (GB 11643-1999, ISO 7064 MOD 11-2)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """Check character of an 18-digit resident ID from its first 17 digits.

    Example:
        >>> id_check_digit("11010519491231002")
        'X'
    """
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise InputError("id_check_digit() needs exactly 17 ASCII digits")
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def is_valid_resident_id(value: str) -> bool:
    """True for an 18-char resident ID whose birth date exists and whose check char is right.

    Example:
        >>> is_valid_resident_id("11010519491231002X"), is_valid_resident_id("110105194912310021")
        (True, False)
    """
    if len(value) != 18 or not value[:17].isdigit() or not value.isascii():
        return False
    try:
        _dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return id_check_digit(value[:17]) == value[17].upper()


# --------------------------------------------------------------------------------------------
# Public data types


class PHISpan(NamedTuple):
    """One PHI span: ``[start, end)`` in the original text, its type and the rule that found it."""

    start: int
    end: int
    type: str
    rule: str


class Replacement(NamedTuple):
    """Where one PHI span went: ``[out_start, out_end)`` in the output came from
    ``[start, end)`` of the original text."""

    out_start: int
    out_end: int
    start: int
    end: int
    type: str


@dataclass(frozen=True)
class DeidResult:
    """Result of :meth:`Deidentifier.deidentify`. Its repr shows counts only, never text.

    Example:
        >>> r = Deidentifier().deidentify("电话13812345678")
        >>> r.text, r.replacements[0].start, r.to_original(2, 6)
        ('电话[电话]', 2, (2, 13))
    """

    text: str = field(repr=False)
    spans: tuple[PHISpan, ...] = field(repr=False)
    replacements: tuple[Replacement, ...] = field(repr=False)
    strategy: str
    original_length: int
    counts: dict[str, int]

    def to_original(self, out_start: int, out_end: int) -> tuple[int, int]:
        """Original span of the output span ``[out_start, out_end)``. A span touching a
        replacement widens to that replacement's whole original span."""
        if not (0 <= out_start <= out_end <= len(self.text)):
            raise IndexError(f"span ({out_start}, {out_end}) is outside the output text")
        return self._map(out_start, False), self._map(out_end, True)

    def _map(self, pos: int, is_end: bool) -> int:
        shift = 0
        for r in self.replacements:
            if is_end:
                if pos <= r.out_start:
                    break
                if pos <= r.out_end:
                    return r.end
            else:
                if pos < r.out_start:
                    break
                if pos < r.out_end:
                    return r.start
            shift = r.end - r.out_end
        return pos + shift

    def audit(self) -> dict[str, Any]:
        """Counts for an audit trail: strategy, length and PHI counts per type. No PHI."""
        return {
            "strategy": self.strategy,
            "original_chars": self.original_length,
            "output_chars": len(self.text),
            "phi": dict(self.counts),
            "phi_total": sum(self.counts.values()),
        }


# --------------------------------------------------------------------------------------------
# Rules


def _read_list(path: Path) -> list[str]:
    """The stripped lines of a text file, without blank lines and ``#`` comments."""
    with open(path, encoding="utf-8") as fh:
        data = fh.read()  # newlines translated as when iterating the file
    return [s for line in data.split("\n") if (s := line.strip()) and s[0] != "#"]


@lru_cache(maxsize=4)
def _medical_words(path: str) -> frozenset[str]:
    """First field of each line of a ``word freq tag`` dictionary (2-8 chars)."""
    return frozenset(
        [w for line in _read_list(Path(path)) if 2 <= len(w := line.split(None, 1)[0]) <= 8]
    )


class DeidRules:
    """The rule data of :class:`Deidentifier`: ``deid.json`` plus its word lists, validated.

    Example:
        >>> rules = DeidRules.default()
        >>> rules.tags["name"], "王" in rules.surnames
        ('[姓名]', True)
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        surnames: Iterable[str],
        places: Iterable[tuple[str, str]],
        name_stopwords: Iterable[str],
        given_chars: Iterable[str],
        address_words: Iterable[str],
        source: str = "rules",
    ) -> None:
        self.source = source
        try:
            self.data = dict(data)
            self.tags: dict[str, str] = dict(data["tags"])
            self.numeric: list[dict[str, str]] = [dict(r) for r in data["numeric"]]
            self.chinese_numeric: list[dict[str, str]] = [dict(r) for r in data["chinese_numeric"]]
            self.cues: dict[str, Any] = dict(data["cues"])
            self.names: dict[str, Any] = dict(data["names"])
            self.address: dict[str, Any] = dict(data["address"])
            self.org: dict[str, Any] = dict(data["org"])
            self.web: dict[str, str] = dict(data["web"])
            self.surrogate: dict[str, Any] = dict(data["surrogate"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ResourceError(f"{source}: missing or malformed section ({exc})") from None
        missing = [t for t in PHI_TYPES if t not in self.tags]
        if missing:
            raise ResourceError(f"{source}: 'tags' lacks {missing}")
        for r in self.numeric + self.chinese_numeric:
            if r.get("type") not in PHI_TYPES or not r.get("rule") or not r.get("pattern"):
                raise ResourceError(
                    f"{source}: numeric rule {r.get('rule')!r} needs 'rule', a 'type' among "
                    f"{list(PHI_TYPES)} and a 'pattern'"
                )
        names = [s for s in surnames if s]
        self.surnames: frozenset[str] = frozenset(s for s in names if len(s) == 1)
        self.compound_surnames: frozenset[str] = frozenset(s for s in names if len(s) == 2)
        self.surname_list: tuple[str, ...] = tuple(s for s in names if len(s) == 1)
        self.compound_list: tuple[str, ...] = tuple(s for s in names if len(s) == 2)
        self.provinces: tuple[str, ...] = tuple(n for n, lvl in places if lvl == "province")
        self.cities: tuple[str, ...] = tuple(n for n, lvl in places if lvl == "city")
        self.name_stopwords: frozenset[str] = frozenset(name_stopwords)
        self.given_chars: tuple[str, ...] = tuple(dict.fromkeys(c for c in given_chars if c))
        self.address_words: tuple[str, ...] = tuple(address_words)
        if not self.surnames or not self.provinces or not self.cities or not self.given_chars:
            raise ResourceError(f"{source}: a word list (surnames, places, given chars) is empty")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "rules") -> DeidRules:
        """Rules from a ``deid.json``-shaped dict, with the shipped word lists."""
        if not isinstance(data, Mapping):
            raise InputError(f"deid rules must be a mapping, got {describe_type(data)}")
        root = corpora_root() / "dict"

        def need(name: str) -> Path:
            p = root / name
            if not p.is_file():
                raise ResourceError(f"shipped resource corpora/dict/{name} is missing")
            return p

        places = []
        for line in _read_list(need("deid_places.txt")):
            parts = line.split("\t")
            if len(parts) < 2:
                raise ResourceError("corpora/dict/deid_places.txt: a line lacks its level")
            places.append((parts[0], parts[1]))
        return cls(
            data,
            surnames=_read_list(need("surnames.txt")),
            places=places,
            name_stopwords=_read_list(need("deid_name_stopwords.txt")),
            given_chars=_read_list(need("deid_given_chars.txt")),
            address_words=_read_list(need("deid_address_words.txt")),
            source=source,
        )

    @classmethod
    def from_json(cls, path: str | Path) -> DeidRules:
        """Rules from a JSON file shaped like ``corpora/rules/deid.json``."""
        import json

        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ResourceError(f"cannot read deid rules {p}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ResourceError(f"deid rules {p} are not valid JSON: {exc}") from None
        return cls.from_dict(data, source=str(p))

    @classmethod
    def default(cls) -> DeidRules:
        """The shipped rules (cached)."""
        return _default_rules()

    def medical_words(self) -> frozenset[str]:
        """Words of ``corpora/dict/medical_words.txt`` (empty when it is not shipped)."""
        p = corpora_root() / "dict" / "medical_words.txt"
        return _medical_words(str(p)) if p.is_file() else frozenset()


@lru_cache(maxsize=1)
def _default_rules() -> DeidRules:
    return DeidRules.from_dict(load_json("rules", "deid.json"), source="corpora/rules/deid.json")


def _flat_alternation(words: Iterable[str]) -> str:
    """Regex alternation of literal words, longest first."""
    return "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w)))


def _alternation(words: Iterable[str]) -> str:
    """Regex alternation of literal words that matches what :func:`_flat_alternation` matches,
    in any context: written as a trie (住院(?:号码?|编号)|...), so that the engine compares each
    char once instead of trying every word. Where several words match at one position, both
    try them longest first: the flat list by its order, the trie because it tries to go on
    before it stops (a greedy ``?``). The engine scans a trie some 10-20% faster."""
    words = set(words)
    if "" in words:
        return _flat_alternation(words)
    trie: dict[str, dict] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def branches(node: dict[str, dict]) -> list[str]:
        return [re.escape(ch) + rest(sub) for ch, sub in sorted(node.items()) if ch]

    def rest(node: dict[str, dict]) -> str:
        alts = branches(node)
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" not in node:
            return body
        return body + "?" if len(alts) > 1 or len(alts[0]) == 1 else "(?:" + body + ")?"

    return "|".join(branches(trie))


# The URL pattern as shipped in deid.json (web.url).
_SHIPPED_URL = r"(?:(?:https?|ftp)://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'*+,;=%]+"

# Shipped patterns and an equivalent spelling that the regex engine scans faster: one whose
# alternatives all start with a literal char, so that the engine skips to those chars (a test
# checks that both find the same matches).
_FASTER_EQUIVALENT: dict[str, str] = {
    _SHIPPED_URL: r"(?:https?://|ftp://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'*+,;=%]+",
}


# Shipped patterns whose every match contains one of these strings: a note that contains none
# of them is not scanned (``str in str`` is many times faster than a regex scan).
_LITERAL_GATES: dict[str, tuple[str, ...]] = {
    _SHIPPED_URL: ("http", "ftp://", "www."),
}


def _compile(pattern: str, where: str) -> re.Pattern:
    try:
        return re.compile(_FASTER_EQUIVALENT.get(pattern, pattern))
    except re.error as exc:
        raise ResourceError(f"deid rules: bad regex in {where}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Detectors: each has ``find(text) -> list[PHISpan]`` on the folded text.


# The numeric rules as shipped in deid.json. For exactly these rules NumericDetector tries its
# combined regex only where a digit run can start one of them (a test compares both ways).
_SHIPPED_NUMERIC_PATTERNS: tuple[str, ...] = (
    r"[1-9]\d{5}(?:18|19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![A-Za-z])",
    r"[1-9]\d{7}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}(?![A-Za-z])",
    r"(?:86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}",
    r"(?:19|20)\d\d(?P<sep>[-/.])(?:1[0-2]|0?[1-9])(?P=sep)(?:3[01]|[12]\d|0?[1-9])(?![.]\d)"
    r"(?:(?:T| {0,2})(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
    r"| ?(?:[01]?\d|2[0-3]) ?[时点](?: ?[0-5]?\d ?分)?)?",
    r"(?:1[89]|20)\d\d ?年 ?(?:1[0-2]|0?[1-9]) ?月(?: ?(?:3[01]|[12]\d|0?[1-9]) ?[日号]"
    r"(?:(?: {0,2})(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
    r"| ?(?:[01]?\d|2[0-3]) ?[时点](?: ?[0-5]?\d ?分)?)?)?",
    r"\d\d ?年 ?(?:1[0-2]|0?[1-9]) ?月(?: ?(?:3[01]|[12]\d|0?[1-9]) ?[日号])?",
    r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
    r"(?:(?:T| {0,2})(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?)?",
    r"(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9])/(?:19|20)\d\d",
    r"(?:19|20)\d\d[-/.](?:1[0-2]|0?[1-9])(?![-/.]?\d)",
    r"(?:1[0-2]|0?[1-9]) ?月 ?(?:3[01]|[12]\d|0?[1-9]) ?[日号]",
    r"0[1-9]\d{1,2}(?:-|\) ?| )?[2-8]\d{6,7}(?:-\d{1,4})?",
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?![.]\d)",
    r"(?:9\d|1[0-4]\d) ?(?:余|多)?(?:周岁|岁)",
    r"\d{1,3}(?:号床|床)(?![位旁边])",
)

# For a shipped chinese_numeric pattern, a regex that finds a piece of text that every match
# contains (年 and a month before 月 in a date; a numeral, maybe 余 / 多 / 周, then 岁 in an age).
# It starts with a literal char, which the engine finds fast; a note where it finds nothing is
# not scanned with the pattern itself.
_CN_GATE: dict[str, re.Pattern] = {
    "[〇零一二三四五六七八九]{2,4}年(?:十[一二]?|[一二三四五六七八九])月"
    "(?:(?:三十[一]?|二?十[一二三四五六七八九]?|[一二三四五六七八九])[日号])?": re.compile(
        "年(?:十[一二]?|[一二三四五六七八九])月"
    ),
    "(?:九十[一二三四五六七八九]?|一百(?:零[一二三四五六七八九]|[一二三四]十[一二三四五六七八九]?"
    "|一十[一二三四五六七八九]?)?)(?:余|多)?(?:周岁|岁)": re.compile(
        "岁(?:(?<=[一二三四五六七八九十百]岁)|(?<=[一二三四五六七八九十百][余多周]岁)"
        "|(?<=[一二三四五六七八九十百][余多]周岁))"
    ),
}

# Where a match of the shipped numeric rules can start: an ASCII digit that follows no ASCII
# digit (as in the combined regex), whose \d run of length L (the first digit included) is
# followed by what some rule needs there. Every match of every rule passes one of these:
#   L >= 7: id18, id15, date_compact (L >= 8), mobile and landline without separators
#   mobile: L in {2, 3, 5}, '-' or ' ', a digit (86-1..., 138 1234..., 86138-1234...)
#   landline: L in {3, 4}, then '-' or ' ' and a digit, or ')', maybe ' ', and [2-8]
#   date_ymd, date_ym: L == 4, '-', '/' or '.', a digit;  date_mdy: L <= 2, '/', 1-2 digits, '/'
#   date_cn, date_yy_cn: L in {2, 4}, maybe ' ', 年, maybe ' ', a digit
#   date_md: L <= 2, maybe ' ', 月, maybe ' ', a digit;  ip: L <= 3, '.', 1-3 digits, '.'
#   age90: 9 and a digit, or 1, [0-4] and a digit; then maybe ' ', 余 or 多, 周; then 岁
#   bed_suffix: L <= 3, then 号床 or 床
# ("(?<=9)" looks at the first digit, which "[0-9]" has taken.) The first lookahead is a cheap
# necessary condition that rejects most runs (37.5, 3次, 100ml) before the second one runs.
_NUMERIC_PREFILTER = re.compile(
    r"[0-9](?<![0-9]{2})"
    r"(?=\d{0,5}[- /.)年月号床余多周岁]|\d{6})"
    r"(?=\d{6}|\d{1,4}[- ]\d|\d?/\d{1,2}/|\d{3}[/.]\d|\d{0,2}\.\d{1,3}\.|\d{2,3}\) ?[2-8]"
    r"|(?:\d|\d{3}) ?年 ?\d|\d? ?月 ?\d|\d{0,2}号?床"
    r"|(?<=9)\d ?[余多]?周?岁|(?<=1)[0-4]\d ?[余多]?周?岁)"
)


class NumericDetector:
    """Digit-based PHI in one combined scan: resident IDs (valid check digit), mobile and
    landline numbers, dates, IP addresses, ages over 89 and bed numbers (12床); then dates and
    ages written in Chinese numerals (二〇一五年三月二日, 九十三岁).

    Example:
        >>> det = NumericDetector(DeidRules.default())
        >>> [(s.type, s.rule) for s in det.find("于2015-11-12 10:30入院")]
        [('date', 'date_ymd')]
    """

    def __init__(self, rules: DeidRules) -> None:
        alts = []
        self._types: dict[str, tuple[str, str]] = {}
        for i, r in enumerate(rules.numeric):
            group = f"g{i}"
            # Backreferences and named groups are renamed so that alternatives do not clash.
            pat = r["pattern"].replace("?P<sep>", f"?P<sep{i}>").replace("(?P=sep)", f"(?P=sep{i})")
            alts.append(f"(?P<{group}>{pat})")
            self._types[group] = (r["type"], r["rule"])
        # ``(?=[0-9])`` first: the engine skips non-digits fast, then no digit may precede.
        # A match that ends in a digit must not run into another digit.
        self._rx = _compile(
            "(?=[0-9])(?<![0-9])(?:" + "|".join(alts) + ")(?:(?<![0-9])|(?![0-9]))", "numeric"
        )
        # The shipped rules get a prefilter (see _NUMERIC_PREFILTER); other rules scan as is.
        shipped = tuple(r["pattern"] for r in rules.numeric) == _SHIPPED_NUMERIC_PATTERNS
        self._candidates = _NUMERIC_PREFILTER if shipped else None
        # One regex each: a leading char class or literal lets the engine skip ahead fast.
        # A shipped pattern runs only on notes where its gate finds something (_CN_GATE).
        self._cn = [
            (
                _compile(r["pattern"], f"chinese_numeric {r['rule']}"),
                r["type"],
                r["rule"],
                _CN_GATE.get(r["pattern"]),
            )
            for r in rules.chinese_numeric
        ]

    def _matches(self, text: str) -> Iterator[re.Match]:
        """The matches of the combined regex, as ``finditer`` gives them. With the prefilter,
        the regex is tried only at digit runs that pass it: the same starts, the same order."""
        cand = self._candidates
        if cand is None:
            yield from self._rx.finditer(text)
            return
        search, match = cand.search, self._rx.match
        pos = 0
        while (c := search(text, pos)) is not None:
            p = c.start()
            m = match(text, p)
            if m is None:
                pos = p + 1
            else:
                yield m
                pos = m.end()

    def find(self, text: str) -> list[PHISpan]:
        out: list[PHISpan] = []
        add = out.append
        types = self._types
        for m in self._matches(text):
            typ, rule = types[m.lastgroup]  # type: ignore[index]
            s, e = m.span()
            if rule == "id18":
                if not is_valid_resident_id(m.group()):
                    continue
            elif rule == "id15":
                v = m.group()
                try:
                    _dt.date(1900 + int(v[6:8]), int(v[8:10]), int(v[10:12]))
                except ValueError:
                    continue
            elif typ == "phone":
                if rule == "mobile" and s > 0 and text[s - 1] == "+":
                    s -= 1
                elif rule == "landline" and s > 0 and text[s - 1] == "(" and ")" in m.group():
                    s -= 1
            elif rule == "ip":
                if all(len(p) == 1 for p in m.group().split(".")):
                    continue  # 2.4.6.8: liver segments, list numbers
            add(PHISpan(s, e, typ, rule))
        for rx, typ, rule, gate in self._cn:
            if gate is not None and gate.search(text) is None:
                continue
            for m in rx.finditer(text):
                add(PHISpan(m.start(), m.end(), typ, rule))
        return out


class CueDetector:
    """Values announced by a cue word: MRN-like numbers (住院号：…, 床号：…, ID：…), phones
    (电话：…), resident IDs whatever their check digit (身份证号：…) and ages over 89
    (年龄：95). The span is the value only.

    Example:
        >>> det = CueDetector(DeidRules.default())
        >>> [(s.start, s.end, s.type) for s in det.find("住院号：000123457")]
        [(4, 13, 'mrn')]
    """

    def __init__(self, rules: DeidRules) -> None:
        cues = rules.cues
        self._kinds: dict[str, str] = {}
        values = {}
        for kind in ("mrn", "phone", "id_number", "age"):
            spec = cues[kind]
            for w in spec["words"]:
                self._kinds.setdefault(w, kind)
            values[kind] = _compile(cues["separator"] + "(" + spec["value"] + ")", f"cues.{kind}")
        self._values = values
        self._rx = _compile(_alternation(self._kinds), "cue words")

    def find(self, text: str) -> list[PHISpan]:
        out: list[PHISpan] = []
        kinds = self._kinds
        for m in self._rx.finditer(text):
            word = m.group()
            s = m.start()
            if word[0].isascii() and s > 0 and text[s - 1].isascii() and text[s - 1].isalnum():
                continue  # 'ID' inside 'PID', 'tel' inside 'hotel'
            kind = kinds[word]
            v = self._values[kind].match(text, m.end())
            if v is None:
                continue
            vs, ve = v.span(1)
            if ve < len(text) and text[ve].isascii() and text[ve].isalnum():
                continue  # the value runs on into more letters/digits than the pattern allows
            if kind == "phone" and sum(c.isdigit() for c in v.group(1)) < 7:
                continue
            out.append(PHISpan(vs, ve, kind, f"cue_{kind}"))
        return out


class NameDetector:
    """Person names after or before a context cue (patients, relatives, staff).

    A name is a surname from ``surnames.txt`` (or, after a strong cue such as 姓名 / 签名, any
    CJK char) plus a 1-2 char given name. After a cue (患者张伟，…) the name must end where a
    terminator starts (punctuation, 男/女, a digit, 因 / 于 / 主诉 ...); before a title
    (孙立新主任医师, 张三之子) the title itself is the evidence, and honorific titles also take a
    surname alone (王主任). Candidates that start with a stopword or medical word of at least
    their own length (张力, 白细胞, 查房) are rejected.

    Example:
        >>> det = NameDetector(DeidRules.default())
        >>> text = "请示孙立新主任医师，患者张力增高"
        >>> [text[s.start:s.end] for s in det.find(text)]
        ['孙立新']
    """

    def __init__(self, rules: DeidRules, extra_stopwords: Iterable[str] = ()) -> None:
        n = rules.names
        self._surnames = rules.surnames
        self._compound = rules.compound_surnames
        self._weak = frozenset(n["weak_surnames"])
        self._pre_title = frozenset(n["pre_title_words"])
        self._pre_title_lens = sorted({len(w) for w in self._pre_title}, reverse=True)
        self._digits = frozenset("0123456789")
        self._blocked = frozenset(n["blocked_given_chars"])
        self._stop = frozenset(rules.name_stopwords) | frozenset(extra_stopwords)
        self._stop_max = max(map(len, self._stop), default=0)
        self._term_chars = frozenset(n["terminator_chars"])
        self._term_words = _compile(_alternation(n["terminator_words"]), "names.terminator_words")
        self._strong = frozenset(n["strong_before"])
        self._before = (
            set(n["strong_before"])
            | set(n["weak_before"])
            | (set(n["honorific_titles"]) - {"先生", "女士", "小姐", "同志"})
        )
        self._titles = frozenset(n["titles"])
        self._honorific = frozenset(n["honorific_titles"])
        words = self._before | set(self._titles)
        self._rx = _compile(_alternation(words), "name cues")
        self._sep = re.compile(r"[:：\s]{0,3}")
        self._gender = _compile(n["gender_after"], "names.gender_after")
        self._boundary = frozenset(",.。、;:!?()[]{}<>\"'《》【】“”‘’ \t\n")

    @staticmethod
    def _cjk(c: str) -> bool:
        return "\u4e00" <= c <= "\u9fff"

    def _stopped(self, text: str, s: int, length: int) -> bool:
        if "某" in text[s : s + length]:
            return True
        stop = self._stop
        for k in range(length, self._stop_max + 1):
            if text[s : s + k] in stop:
                return True
        return False

    def _terminates(self, text: str, e: int) -> bool:
        return (
            e >= len(text) or text[e] in self._term_chars or bool(self._term_words.match(text, e))
        )

    def forward(self, text: str, s: int, strong: bool, labelled: bool = True) -> int | None:
        """End of a name starting at ``s`` (after a cue), or None. ``labelled``: a ':' or a
        space separates cue and name (姓名：…), which lets an unknown surname through."""
        n = len(text)
        if s >= n or not self._cjk(text[s]):
            return None
        weak = not strong and text[s] in self._weak
        if text[s : s + 2] in self._compound:
            sl = 2
        elif text[s] in self._surnames:
            sl = 1
        elif strong and labelled:
            return self._standalone(text, s)
        else:
            return None
        g = 0
        blocked = self._blocked
        while g < 2 and s + sl + g < n:
            c = text[s + sl + g]
            if not self._cjk(c) or c in blocked:
                break
            g += 1
        for k in range(g, 0, -1):
            e = s + sl + k
            if not self._terminates(text, e):
                continue
            if k == 2 and (t := self._term_words.match(text, e - 1)) and t.end() - t.start() > 1:
                continue  # 赵丽执行: the last char starts a terminator word, so 赵丽
            if weak and e < n and text[e] in self._digits:
                continue  # 患者于近9年: a function-word surname is not taken before a number
            if self._stopped(text, s, e - s):
                return None
            return e
        return self._standalone(text, s) if strong and labelled else None

    def _standalone(self, text: str, s: int) -> int | None:
        """After a strong cue (姓名：, 签名：) a 2-4 char CJK run that stands alone is taken as a
        name even with a surname outside the list (鲜于…, 仉…)."""
        n = len(text)
        e = s
        while e < n and e - s < 5 and self._cjk(text[e]):
            e += 1
        if not 2 <= e - s <= 4 or not (e >= n or text[e] in self._term_chars):
            return None
        if self._stopped(text, s, e - s):
            return None
        return e

    def backward(self, text: str, p: int, honorific: bool, boundary: bool = False) -> int | None:
        """Start of a name ending at ``p`` (before a title), or None."""
        blocked = self._blocked
        for length in (4, 3, 2, 1):
            s = p - length
            if s < 0:
                continue
            cand = text[s:p]
            if not all(self._cjk(c) for c in cand):
                continue
            if length >= 2 and cand[:2] in self._compound:
                sl = 2
            elif cand[0] in self._surnames:
                sl = 1
            else:
                continue
            if length == 4 and sl != 2:
                continue
            if length - sl > 2 or (length == sl and not honorific):
                continue
            if any(c in blocked for c in cand[sl:]):
                continue
            if length == 3 and sl == 1 and cand[0] in self._weak and cand[1] in self._surnames:
                continue  # 于王明医生: prefer 王明
            if boundary and s > 0 and text[s - 1] not in self._boundary:
                continue
            if any(text[p - k : p] in self._pre_title for k in self._pre_title_lens if k >= length):
                return None  # 主管医师, 上级医师: the word before the title is no name
            if self._stopped(text, s, length):
                continue
            return s
        return None

    def find(self, text: str) -> list[PHISpan]:
        out: list[PHISpan] = []
        surnames, compound = self._surnames, self._compound
        titles, before = self._titles, self._before
        sep = self._sep.match
        n = len(text)
        for m in self._rx.finditer(text):
            word = m.group()
            if word in titles:
                s = self.backward(text, m.start(), word in self._honorific)
                if s is not None:
                    out.append(PHISpan(s, m.start(), "name", "name_title"))
            if word in before:
                end = m.end()
                start = sep(text, end).end()  # type: ignore[union-attr]
                strong = word in self._strong
                if (
                    not strong
                    and start < n
                    and text[start] not in surnames
                    and text[start : start + 2] not in compound
                ):
                    continue  # the common case (患者入院后…): no surname, no name
                e = self.forward(text, start, strong, labelled=start > end)
                if e is not None:
                    out.append(PHISpan(start, e, "name", "name_cue"))
        for m in self._gender.finditer(text):
            p = m.start()
            s = self.backward(text, p, False, boundary=True)
            if s is not None:
                out.append(PHISpan(s, p, "name", "name_gender"))
        return out


class AddressDetector:
    """Addresses: a chain of components (省 / 市 / 区 / 县 / 镇 / 乡 / 村 / 路 / 街 / 巷 / 小区 ...
    and house numbers 12号 / 3栋 / 2单元 / 501室) that starts at a gazetteer name followed by its
    suffix (河北省, 承德市), right after an address cue (现住, 住址：, 籍贯：), or at a road with a
    house number (建设路12号).

    Example:
        >>> det = AddressDetector(DeidRules.default())
        >>> text = "现住河北省保定市清苑区建设路12号，心前区无隆起"
        >>> [text[s.start:s.end] for s in det.find(text)]
        ['河北省保定市清苑区建设路12号']
    """

    def __init__(self, rules: DeidRules) -> None:
        a = rules.address
        self._provinces = frozenset(rules.provinces)
        self._cities = frozenset(rules.cities)
        places = set(rules.provinces) | set(rules.cities)
        self._places = frozenset(places)
        self._place_lens = sorted({len(p) for p in places if len(p) >= 2}, reverse=True)
        self._place_last = frozenset(p[-1] for p in places)
        self._prov_suffix = _compile(a["province_suffix"], "address.province_suffix")
        self._city_suffix = _compile(a["city_suffix"], "address.city_suffix")
        self._anchor = _compile("[" + re.escape(a["anchor_suffix_chars"]) + "]", "anchor chars")
        self._cue = _compile(_alternation(a["cues"]), "address.cues")
        self._sep = re.compile(r"[:：\s]{0,3}")
        self._component = _compile(a["component"], "address.component")
        self._number = _compile(a["number"], "address.number")
        self._road = _compile(a["road_number"], "address.road_number")
        self._place = _compile(
            "(?:"
            + _alternation(places)
            + ")(?:"
            + a["province_suffix"]
            + "|"
            + a["city_suffix"]
            + "|区|县)?",
            "address places",
        )
        self._blocked = frozenset(a["blocked_chars"])
        self._generic = frozenset(a["generic"])
        self._max = int(a["max_chars"])

    def _gazetteer_start(self, text: str, p: int) -> int | None:
        """Start of a place name ending at the suffix char at ``p``, or None."""
        if p < 2 or text[p - 1] not in self._place_last:
            return None  # the common case (心前区): no place name ends here
        places = self._places
        for k in self._place_lens:  # longest first, as a walk from the longest name down
            if k <= p and text[p - k : p] in places:
                return p - k
        return None

    def _extend_back(self, text: str, s: int) -> int:
        """Take in a province written before a city (河北承德市, 河北省承德市)."""
        for k in (3, 2):
            if text[s - k : s] in self._provinces and s - k >= 0:
                return s - k
        for k in (4, 3):
            if s - k >= 0 and text[s - k : s - 1] in self._provinces and text[s - 1] in "省市":
                return s - k
        return s

    def _province_only(self, value: str) -> bool:
        if value in self._provinces:
            return True
        m = self._prov_suffix.fullmatch(value, len(value) - 1) if value else None
        for k in (3, 2):
            if value[:k] in self._provinces and self._prov_suffix.fullmatch(value[k:]):
                return True
        return m is not None and False

    def _component_ok(self, comp: str) -> bool:
        return comp not in self._generic and not any(c in self._blocked for c in comp)

    def chain(self, text: str, s: int) -> tuple[int, int]:
        """Parse address components from ``s``: (end, number of components)."""
        pos, count = s, 0
        limit = min(len(text), s + self._max)
        while pos < limit:
            best = -1
            m = self._place.match(text, pos)
            if m is not None:
                best = m.end()
            m = self._number.match(text, pos)
            if m is not None and m.end() > best:
                best = m.end()
            m = self._component.match(text, pos)
            if m is not None and m.end() > best and self._component_ok(m.group()):
                best = m.end()
            if best > pos:
                pos, count = best, count + 1
                continue
            if text[pos] == " " and count:
                nxt = pos + 1
                if self._number.match(text, nxt) or self._component.match(text, nxt):
                    pos = nxt
                    continue
            break
        while pos > s and text[pos - 1] == " ":
            pos -= 1
        return pos, count

    def find(self, text: str) -> list[PHISpan]:
        out: list[PHISpan] = []
        last_end = -1
        starts: list[tuple[int, str, int]] = []  # (start, rule, must_reach)
        for m in self._cue.finditer(text):
            starts.append((self._sep.match(text, m.end()).end(), "address_cue", 0))  # type: ignore[union-attr]
        for m in self._anchor.finditer(text):
            p = m.start()
            s = self._gazetteer_start(text, p)
            if s is None:
                continue
            name = text[s:p]
            rx = self._prov_suffix if name in self._provinces else self._city_suffix
            if not rx.match(text, p) and text[p] not in "区县":
                continue
            starts.append((self._extend_back(text, s), "address_place", 0))
        for m in self._road.finditer(text):
            # Walk back over the road name, then parse forward from the earliest start that works.
            b = m.start()
            lo = max(0, b - 12)
            blocked = self._blocked
            while b > lo and "\u4e00" <= text[b - 1] <= "\u9fff" and text[b - 1] not in blocked:
                b -= 1
            starts.append((b, "address_road", m.end()))
        starts.sort()
        for s, rule, must in starts:
            if s < last_end:
                continue
            if must:
                found = None
                for b in range(s, must):
                    e, count = self.chain(text, b)
                    if e >= must:
                        found = (b, e)
                        break
                if found is None:
                    continue
                s, e = found
            else:
                e, count = self.chain(text, s)
                if count == 0:
                    continue
            if self._province_only(text[s:e]):
                continue  # a province alone is no finer than a state (Safe Harbor keeps it)
            out.append(PHISpan(s, e, "address", rule))
            last_end = e
        return out


class OrgDetector:
    """Organisations: a name ending in 医院 / 卫生院 / 社区卫生服务中心 / 诊所 / 公司 / 学校 ...
    The name is walked back from the suffix to a stop char (在 于 到 ... or punctuation);
    generic names (当地医院, 上级医院, 我院, ``**医院``) are skipped.

    Example:
        >>> det = OrgDetector(DeidRules.default())
        >>> text = "曾在廊坊市中心医院就诊，后转上级医院"
        >>> [text[s.start:s.end] for s in det.find(text)]
        ['廊坊市中心医院']
    """

    def __init__(self, rules: DeidRules) -> None:
        o = rules.org
        self._rx = _compile(_alternation(o["suffixes"]), "org.suffixes")
        self._stop_chars = frozenset(o["stop_chars"])
        self._stop_words = frozenset(o["stop_words"])
        self._stop_lens = sorted({len(w) for w in self._stop_words}, reverse=True)
        self._generic = frozenset(o["generic"])
        self._max = int(o["max_name_chars"])
        self._min = int(o["min_name_chars"])

    def name_start(self, text: str, p: int) -> int:
        """Start of the organisation name that ends at ``p`` (where the suffix starts)."""
        b = p
        lo = max(0, p - self._max)
        while b > lo:
            c = text[b - 1]
            if c.isdigit() and c.isascii():
                if b < p and not text[b].isdigit():
                    break  # digits only right before the suffix (301医院), not a date before
            elif not ("\u4e00" <= c <= "\u9fff" or c == "*"):
                break
            if c in self._stop_chars and not (c in "中日" and text[b - 2 : b] == "中日"):
                break
            if any(text[b - k : b] in self._stop_words for k in self._stop_lens if k <= b):
                break
            b -= 1
        return b

    def find(self, text: str) -> list[PHISpan]:
        out: list[PHISpan] = []
        for m in self._rx.finditer(text):
            p = m.start()
            b = self.name_start(text, p)
            name = text[b:p]
            if len(name) < self._min or name in self._generic or not name.strip("*"):
                continue
            if name.isdigit() and len(name) < 3:
                continue
            out.append(PHISpan(b, m.end(), "org", "org_suffix"))
        return out


class WebDetector:
    """E-mail addresses (found from their ``@``) and URLs (``http://``, ``www.``, bare
    domains with a common TLD).

    Example:
        >>> det = WebDetector(DeidRules.default())
        >>> [s.type for s in det.find("邮箱 li.wei@example.com，见 https://x.org/a")]
        ['email', 'url']
    """

    def __init__(self, rules: DeidRules) -> None:
        w = rules.web
        self._local = frozenset(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-"
        )
        self._domain = _compile(w["email_domain"], "web.email_domain")
        self._url = _compile(w["url"], "web.url")
        self._url_gate = _LITERAL_GATES.get(w["url"])
        tlds = _alternation(w["bare_domain_tlds"])
        # Bare domains (example.com) are found from their TLD, then walked back.
        self._tld = _compile(
            rf"\.(?:{tlds})(?:\.cn)?(?![A-Za-z0-9-])" + w["bare_domain_path"], "web.bare_domain"
        )
        self._label = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
        self._trail = ".,;:!?)]}'\""

    def find(self, text: str) -> list[PHISpan]:
        out: list[PHISpan] = []
        emails: list[tuple[int, int]] = []
        i = text.find("@")
        while i >= 0:
            b = i
            lo = max(0, i - 64)
            while b > lo and text[b - 1] in self._local:
                b -= 1
            while b < i and text[b] in ".-":
                b += 1
            m = self._domain.match(text, i + 1)
            if b < i and m is not None:
                out.append(PHISpan(b, m.end(), "email", "email"))
                emails.append((b, m.end()))
                i = text.find("@", m.end())
            else:
                i = text.find("@", i + 1)
        urls: list[tuple[int, int]] = []
        gate = self._url_gate
        scan = gate is None or any(g in text for g in gate)
        for m in self._url.finditer(text) if scan else ():
            s, e = m.span()
            while e > s and text[e - 1] in self._trail:
                e -= 1
            if any(a <= s < z for a, z in emails):
                continue
            out.append(PHISpan(s, e, "url", "url"))
            urls.append((s, e))
        for m in self._tld.finditer(text):
            s, e = m.span()
            if any(a <= s < z for a, z in emails + urls):
                continue
            b = s
            lo = max(0, s - 253)
            while b > lo and text[b - 1] in self._label:
                b -= 1
            while b < s and text[b] in ".-":
                b += 1
            if b == s or (b > 0 and text[b - 1] in "@/"):
                continue
            while e > s and text[e - 1] in self._trail:
                e -= 1
            out.append(PHISpan(b, e, "url", "bare_domain"))
        return out


# --------------------------------------------------------------------------------------------
# Overlap resolution


_RANK = {t: i for i, t in enumerate(PHI_TYPES)}


def _merge(spans: list[PHISpan]) -> list[PHISpan]:
    """Overlapping spans become one: their union, typed by the longest member (ties: the
    order of ``PHI_TYPES``)."""
    if len(spans) < 2:
        return list(spans)
    rank = _RANK
    spans = sorted(spans, key=lambda x: (x.start, -x.end))
    out: list[PHISpan] = []
    cur = spans[0]
    best = cur
    for sp in spans[1:]:
        if sp.start < cur.end:
            if (sp.end - sp.start, -rank[sp.type]) > (best.end - best.start, -rank[best.type]):
                best = sp
            if sp.end > cur.end:
                cur = PHISpan(cur.start, sp.end, cur.type, cur.rule)
            continue
        out.append(PHISpan(cur.start, cur.end, best.type, best.rule))
        cur = best = sp
    out.append(PHISpan(cur.start, cur.end, best.type, best.rule))
    return out


# --------------------------------------------------------------------------------------------
# Strategies: ``replace(original_value, span, patient_id) -> str``


class TagStrategy:
    """Replaces each span by its type tag, e.g. ``[姓名]``.

    Example:
        >>> TagStrategy(DeidRules.default()).replace("张伟", PHISpan(0, 2, "name", "x"), None)
        '[姓名]'
    """

    name = "tag"

    def __init__(self, rules: DeidRules) -> None:
        self._tags = rules.tags

    def replace(self, value: str, span: PHISpan, patient_id: str | None) -> str:
        return self._tags[span.type]


class MaskStrategy:
    """Replaces each char of a span by ``mask_char``: same length, so offsets are preserved.

    Example:
        >>> MaskStrategy("○").replace("张伟", PHISpan(0, 2, "name", "x"), None)
        '○○'
    """

    name = "mask"

    def __init__(self, mask_char: str = "*") -> None:
        if not isinstance(mask_char, str) or len(mask_char) != 1:
            raise InputError("mask_char must be a single character")
        self.mask_char = mask_char

    def replace(self, value: str, span: PHISpan, patient_id: str | None) -> str:
        return self.mask_char * len(value)


_CN_DIGITS = "〇一二三四五六七八九"
_CN_DATE = re.compile(
    r"([〇零一二三四五六七八九]+)年([一二三四五六七八九十]+)月(?:([一二三四五六七八九十]+)([日号]))?"
)
_DIGIT_RUN = re.compile(r"\d+")


class SurrogateStrategy:
    """Consistent fake values: HMAC-SHA256 of (secret, patient id, value) picks each surrogate,
    so a value maps to the same fake everywhere in one patient's notes and to other fakes for
    other patients; without the secret the mapping cannot be recomputed.

    Dates move by one per-patient offset (intervals are kept) and keep their format; phones keep
    their shape; resident IDs keep region-like codes, a shifted birth date and the sex digit, and
    get a valid check digit; names become a surname from ``surnames.txt`` plus given-name chars
    (a surname keeps one surrogate across full-name and 王主任 mentions); ages over 89 become
    the Safe-Harbor ``90``.

    Example:
        >>> s = SurrogateStrategy(DeidRules.default(), secret="k")
        >>> a = s.replace("13812345678", PHISpan(0, 11, "phone", "mobile"), "p1")
        >>> a == s.replace("13812345678", PHISpan(0, 11, "phone", "mobile"), "p1"), len(a)
        (True, 11)
    """

    name = "surrogate"

    def __init__(self, rules: DeidRules, secret: str | bytes) -> None:
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not isinstance(secret, bytes) or not secret:
            raise InputError("the surrogate strategy needs a non-empty secret (str or bytes)")
        self._key = secret
        self._rules = rules
        sg = rules.surrogate
        self._shift_min = int(sg["date_shift_min"])
        self._shift_max = int(sg["date_shift_max"])
        self._age = int(sg["age_value"])
        self._domains = tuple(sg["email_domains"])
        self._url_base = str(sg["url_base"])
        self._ip_prefixes = tuple(sg["ip_prefixes"])
        self._provcodes = tuple(sg["id_province_codes"])
        self._org_middles = tuple(sg["org_middles"])
        self._org_suffix = re.compile(_alternation(rules.org["suffixes"]) + "$")
        self._component = re.compile(rules.address["component"])
        self._number = re.compile(rules.address["number"])
        self._provinces = frozenset(rules.provinces)
        self._cities = frozenset(rules.cities)

    def __repr__(self) -> str:
        return "SurrogateStrategy(secret=<hidden>)"

    # -- randomness ----------------------------------------------------------------------
    def _h(self, patient_id: str | None, kind: str, value: str) -> int:
        msg = f"{patient_id or ''}\x1f{kind}\x1f{value}".encode()
        return int.from_bytes(hmac.new(self._key, msg, hashlib.sha256).digest(), "big")

    class _Stream:
        def __init__(self, seed: int) -> None:
            self.x = seed

        def below(self, n: int) -> int:
            if self.x < n * 4:
                self.x = int.from_bytes(hashlib.sha256(self.x.to_bytes(40, "big")).digest(), "big")
                self.x |= 1 << 255
            r = self.x % n
            self.x //= n
            return r

    def _stream(self, patient_id: str | None, kind: str, value: str) -> SurrogateStrategy._Stream:
        return self._Stream(self._h(patient_id, kind, value) | (1 << 256))

    def date_shift(self, patient_id: str | None) -> int:
        """The per-patient date offset in days (never 0)."""
        h = self._h(patient_id, "date-shift", "")
        days = self._shift_min + h % (self._shift_max - self._shift_min + 1)
        return days if (h >> 64) & 1 else -days

    # -- per type ------------------------------------------------------------------------
    def replace(self, value: str, span: PHISpan, patient_id: str | None) -> str:
        t = span.type
        if t == "name":
            return self._name(value, patient_id)
        if t == "date":
            return self._date(value, span.rule, patient_id)
        if t == "id_number":
            return self._id(value, patient_id)
        if t == "phone":
            return self._phone(value, patient_id)
        if t == "age":
            return self._age_value(value)
        if t == "address":
            return self._address(value, patient_id)
        if t == "org":
            return self._org(value, patient_id)
        if t == "email":
            st = self._stream(patient_id, "email", value.lower())
            user = "".join("abcdefghijklmnopqrstuvwxyz"[st.below(26)] for _ in range(8))
            return f"{user}@{self._domains[st.below(len(self._domains))]}"
        if t == "url":
            st = self._stream(patient_id, "url", value)
            return self._url_base + "".join("0123456789abcdef"[st.below(16)] for _ in range(8))
        if t == "ip":
            st = self._stream(patient_id, "ip", value)
            return self._ip_prefixes[st.below(len(self._ip_prefixes))] + str(1 + st.below(254))
        return self._shape(value, patient_id, t)  # mrn and anything else: same shape

    def _shape(self, value: str, patient_id: str | None, kind: str) -> str:
        st = self._stream(patient_id, kind, value)
        out = []
        for c in value:
            if c.isdigit() and c.isascii():
                out.append(str(st.below(10)))
            elif c.isascii() and c.isalpha():
                letter = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[st.below(26)]
                out.append(letter if c.isupper() else letter.lower())
            else:
                out.append(c)
        return "".join(out)

    def _name(self, value: str, patient_id: str | None) -> str:
        r = self._rules
        sl = 2 if value[:2] in r.compound_surnames else 1
        surname, given = value[:sl], value[sl:]
        pool = r.compound_list if sl == 2 else r.surname_list
        st = self._stream(patient_id, "surname", surname)
        new_s = pool[st.below(len(pool))]
        if new_s == surname:
            new_s = pool[(pool.index(surname) + 1) % len(pool)]
        if not given:
            return new_s
        st = self._stream(patient_id, "given", value)
        chars = r.given_chars
        new_g = "".join(chars[st.below(len(chars))] for _ in given)
        if new_g == given:
            new_g = chars[(chars.index(new_g[0]) + 1) % len(chars)] + new_g[1:]
        return new_s + new_g

    def _age_value(self, value: str) -> str:
        runs = list(_DIGIT_RUN.finditer(value))
        if runs:
            m = runs[0]
            return value[: m.start()] + str(self._age) + value[m.end() :]
        # Chinese numerals (九十三岁): the number part becomes 九十.
        i = value.find("岁")
        tail = value[i:] if i >= 0 else ""
        for marker in ("余", "多", "周"):
            j = value.find(marker)
            if 0 <= j < (i if i >= 0 else len(value)):
                tail = value[j:]
                break
        return "九十" + tail

    # dates ------------------------------------------------------------------------------
    @staticmethod
    def _cn_to_int(s: str) -> int:
        if all(c in _CN_DIGITS or c == "零" for c in s):
            return int("".join(str(_CN_DIGITS.index("〇" if c == "零" else c)) for c in s))
        total, cur = 0, 0
        for c in s:
            if c == "十":
                total += (cur or 1) * 10
                cur = 0
            else:
                cur = _CN_DIGITS.index("〇" if c == "零" else c)
        return total + cur

    @staticmethod
    def _int_to_cn(n: int, positional: bool) -> str:
        if positional:
            return "".join(_CN_DIGITS[int(d)] for d in str(n))
        if n < 10:
            return _CN_DIGITS[n]
        tens, ones = divmod(n, 10)
        return ("" if tens == 1 else _CN_DIGITS[tens]) + "十" + (_CN_DIGITS[ones] if ones else "")

    def _date(self, value: str, rule: str, patient_id: str | None) -> str:
        shift = _dt.timedelta(days=self.date_shift(patient_id))
        if rule == "date_cn_numerals":
            return self._date_cn_numerals(value, shift)
        runs = list(_DIGIT_RUN.finditer(value))
        if rule == "date_compact":
            y, mo, d = value[0:4], value[4:6], value[6:8]
            nd = self._shift_date(int(y), int(mo), int(d), shift)
            return f"{nd.year:04d}{nd.month:02d}{nd.day:02d}" + value[8:]
        order = {
            "date_ymd": "ymd",
            "date_cn": "ymd",
            "date_yy_cn": "ymd",
            "date_ym": "ym",
            "date_md": "md",
            "date_mdy": "mdy",
        }.get(rule)
        if order is None or len(runs) < len(order):
            return self._shape(value, patient_id, "date")
        parts = dict(zip(order, runs[: len(order)], strict=True))
        try:
            ym = parts.get("y")
            year = int(ym.group()) if ym else 2000
            if ym is not None and len(ym.group()) == 2:
                year += 1900 if year >= 50 else 2000
            month = int(parts["m"].group()) if "m" in parts else 6
            day = int(parts["d"].group()) if "d" in parts else 15
            nd = self._shift_date(year, month, day, shift)
        except (ValueError, KeyError):
            return self._shape(value, patient_id, "date")
        new = {"y": nd.year, "m": nd.month, "d": nd.day}
        out, pos = [], 0
        for key, m in zip(order, runs[: len(order)], strict=True):
            out.append(value[pos : m.start()])
            old = m.group()
            v = new[key]
            if key == "y" and len(old) == 2:
                out.append(f"{v % 100:02d}")
            else:
                out.append(str(v).zfill(len(old)))
            pos = m.end()
        out.append(value[pos:])
        return "".join(out)

    @staticmethod
    def _shift_date(y: int, m: int, d: int, shift: _dt.timedelta) -> _dt.date:
        import calendar

        if not 1 <= m <= 12:
            raise ValueError("month")
        d = max(1, min(d, calendar.monthrange(y, m)[1]))
        return _dt.date(y, m, d) + shift

    def _date_cn_numerals(self, value: str, shift: _dt.timedelta) -> str:
        m = _CN_DATE.match(value)
        if m is None:
            return value
        y = self._cn_to_int(m.group(1))
        mo = self._cn_to_int(m.group(2))
        d = self._cn_to_int(m.group(3)) if m.group(3) else 15
        try:
            nd = self._shift_date(y, mo, d, shift)
        except ValueError:
            return value
        out = f"{self._int_to_cn(nd.year, True)}年{self._int_to_cn(nd.month, False)}月"
        if m.group(3):
            out += self._int_to_cn(nd.day, False) + m.group(4)
        return out + value[m.end() :]

    # ids and phones ---------------------------------------------------------------------
    def _id(self, value: str, patient_id: str | None) -> str:
        st = self._stream(patient_id, "id", value[:17])
        area = self._provcodes[st.below(len(self._provcodes))] + "".join(
            str(st.below(10)) for _ in range(4)
        )
        shift = _dt.timedelta(days=self.date_shift(patient_id))
        if len(value) == 18:
            try:
                birth = _dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14])) + shift
            except ValueError:
                birth = _dt.date(1940 + st.below(60), 1 + st.below(12), 1 + st.below(28))
            seq = f"{st.below(100):02d}"
            sex = value[16] if value[16].isdigit() else str(st.below(10))
            sex = str((2 * st.below(5) + int(sex) % 2) % 10)
            first17 = f"{area}{birth:%Y%m%d}{seq}{sex}"
            return first17 + id_check_digit(first17)
        try:
            birth = _dt.date(1900 + int(value[6:8]), int(value[8:10]), int(value[10:12])) + shift
        except ValueError:
            birth = _dt.date(1940 + st.below(59), 1 + st.below(12), 1 + st.below(28))
        return f"{area}{birth:%y%m%d}" + "".join(str(st.below(10)) for _ in range(3))

    def _phone(self, value: str, patient_id: str | None) -> str:
        digits = "".join(c for c in value if c.isdigit())
        st = self._stream(patient_id, "phone", digits[-11:])
        out = []
        idx = 0
        # Keep a '+86'/'86' prefix, the leading 1 (mobile) or 0 (area code), and the shape.
        core = digits[2:] if digits.startswith("86") and len(digits) >= 13 else digits
        keep_prefix = len(digits) - len(core)
        for c in value:
            if not c.isdigit():
                out.append(c)
                continue
            k = idx - keep_prefix
            if k < 0:
                out.append(c)
            elif k == 0 and c in "01":
                out.append(c)
            elif k == 1 and core[0] == "1":
                out.append("3456789"[st.below(7)])
            elif k == 1 and core[0] == "0":
                out.append(str(1 + st.below(9)))
            else:
                out.append(str(st.below(10)))
            idx += 1
        return "".join(out)

    # addresses and organisations ---------------------------------------------------------
    def _fake_word(self, st: SurrogateStrategy._Stream, length: int) -> str:
        words = self._rules.address_words
        if length == 2 and words:
            return words[st.below(len(words))]
        chars = self._rules.given_chars
        return "".join(chars[st.below(len(chars))] for _ in range(max(1, length)))

    def _address(self, value: str, patient_id: str | None) -> str:
        r = self._rules
        st = self._stream(patient_id, "address", value)
        out, pos = [], 0
        while pos < len(value):
            m = self._number.match(value, pos)
            if m is not None:
                out.append(self._shape(m.group(), patient_id, "address-number"))
                pos = m.end()
                continue
            name = None
            for plist, allowed in ((r.provinces, self._provinces), (r.cities, self._cities)):
                for k in range(min(5, len(value) - pos), 1, -1):
                    if value[pos : pos + k] in allowed:
                        name = (k, plist)
                        break
                if name:
                    break
            if name is not None:
                k, plist = name
                new = plist[st.below(len(plist))]
                out.append(new)
                pos += k
                continue
            m = self._component.match(value, pos)
            if m is not None:
                comp = m.group()
                suffix_len = 1
                for suf in (
                    "特别行政区",
                    "自治区",
                    "自治州",
                    "自治县",
                    "开发区",
                    "工业园",
                    "街道",
                    "社区",
                    "大街",
                    "大道",
                    "胡同",
                    "小区",
                    "花园",
                    "公寓",
                    "新村",
                    "家园",
                    "大厦",
                    "广场",
                    "园区",
                    "农场",
                    "林场",
                ):
                    if comp.endswith(suf) and len(comp) > len(suf):
                        suffix_len = len(suf)
                        break
                out.append(self._fake_word(st, len(comp) - suffix_len) + comp[-suffix_len:])
                pos = m.end()
                continue
            c = value[pos]
            out.append(
                self._fake_word(st, 1)
                if "\u4e00" <= c <= "\u9fff"
                else (str(st.below(10)) if c.isdigit() else c)
            )
            pos += 1
        return "".join(out)

    def _org(self, value: str, patient_id: str | None) -> str:
        st = self._stream(patient_id, "org", value)
        m = self._org_suffix.search(value)
        suffix = m.group() if m else ""
        city = self._rules.cities[st.below(len(self._rules.cities))]
        middle = self._org_middles[st.below(len(self._org_middles))]
        if suffix in ("医院", "卫生院", "诊所", "门诊部", "保健院", "妇幼保健院"):
            return f"{city}市{middle}{suffix}"
        return f"{city}{self._fake_word(st, 2)}{suffix}"


# --------------------------------------------------------------------------------------------
# The facade


class Deidentifier:
    """Finds PHI in Chinese clinical notes and tags, masks or replaces it.

    ``strategy``: ``"tag"`` (``[姓名]``), ``"mask"`` (same length, ``mask_char``) or
    ``"surrogate"`` (needs ``secret``; pass ``patient_id`` to :meth:`deidentify` so that each
    patient gets consistent fakes). ``types`` restricts the PHI types (default: all of
    ``PHI_TYPES``). ``rules``: a :class:`DeidRules`, a dict shaped like ``deid.json``, or a path
    to such a JSON file (default: the shipped rules).

    Example:
        >>> d = Deidentifier(strategy="mask")
        >>> d.deidentify("家属电话13812345678").text
        '家属电话***********'
        >>> [(s.start, s.end, s.type) for s in d.find("于2015年3月2日入院")]
        [(1, 10, 'date')]
    """

    def __init__(
        self,
        strategy: str = "tag",
        secret: str | bytes | None = None,
        types: Iterable[str] | None = None,
        rules: DeidRules | Mapping[str, Any] | str | Path | None = None,
        mask_char: str = "*",
    ) -> None:
        if strategy not in STRATEGIES:
            raise InputError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
        if rules is None:
            rules = DeidRules.default()
        elif isinstance(rules, (str, Path)):
            rules = DeidRules.from_json(rules)
        elif isinstance(rules, Mapping):
            rules = DeidRules.from_dict(rules)
        elif not isinstance(rules, DeidRules):
            raise InputError(
                f"rules must be DeidRules, a dict or a path, got {describe_type(rules)}"
            )
        self.rules = rules
        if types is None:
            self.types: frozenset[str] = frozenset(PHI_TYPES)
        else:
            if isinstance(types, str):
                types = [types]
            self.types = frozenset(types)
            unknown = sorted(self.types - set(PHI_TYPES))
            if unknown:
                raise InputError(f"unknown PHI type(s) {unknown}; known: {list(PHI_TYPES)}")
        self.strategy = strategy
        self.mask_char = mask_char
        if strategy == "tag":
            self._strategy: Any = TagStrategy(rules)
        elif strategy == "mask":
            self._strategy = MaskStrategy(mask_char)
        else:
            if secret is None:
                raise InputError(
                    "strategy='surrogate' needs a secret: Deidentifier(strategy='surrogate', "
                    "secret=...) -- keep it out of the data and of version control"
                )
            self._strategy = SurrogateStrategy(rules, secret)
        t = self.types
        self._detectors: list[Any] = []
        if t & {"id_number", "phone", "date", "age", "ip"}:
            self._detectors.append(NumericDetector(rules))
        if t & {"mrn", "phone", "id_number", "age"}:
            self._detectors.append(CueDetector(rules))
        if "name" in t:
            self._detectors.append(NameDetector(rules, rules.medical_words()))
        if "org" in t:
            self._detectors.append(OrgDetector(rules))
        if "address" in t:
            self._detectors.append(AddressDetector(rules))
        if t & {"email", "url"}:
            self._detectors.append(WebDetector(rules))
        self._finders = [d.find for d in self._detectors]
        self._fold = _fold()

    def __repr__(self) -> str:
        types = "all" if self.types == frozenset(PHI_TYPES) else sorted(self.types)
        return f"Deidentifier(strategy={self.strategy!r}, types={types!r})"

    def config(self) -> dict[str, Any]:
        """Settings as a JSON-serialisable dict (never the secret)."""
        return {
            "strategy": self.strategy,
            "types": sorted(self.types),
            "mask_char": self.mask_char,
            "rules": self.rules.source,
        }

    def find(self, text: str) -> list[PHISpan]:
        """PHI spans of ``text``, sorted and non-overlapping, in offsets of ``text`` itself."""
        if not isinstance(text, str):
            raise TypeError(f"find() expects str, got {describe_type(text)}")
        if not text:
            return []
        t = self._fold(text)
        spans: list[PHISpan] = []
        for find in self._finders:
            spans.extend(find(t))
        types = self.types
        if len(types) < len(PHI_TYPES):
            spans = [s for s in spans if s.type in types]
        return _merge(spans)

    def deidentify(self, text: str, patient_id: str | None = None) -> DeidResult:
        """Rewrite the PHI of ``text`` with the strategy; see :class:`DeidResult`."""
        spans = self.find(text)
        return self.apply(text, spans, patient_id)

    def apply(
        self, text: str, spans: Sequence[PHISpan], patient_id: str | None = None
    ) -> DeidResult:
        """Rewrite given spans (sorted, non-overlapping, original offsets) with the strategy."""
        if patient_id is not None and not isinstance(patient_id, str):
            patient_id = str(patient_id)
        if not spans:  # text[:] is text itself for a str (a str copy for a subclass)
            return DeidResult(text[:], (), (), self.strategy, len(text), {})
        parts: list[str] = []
        reps: list[Replacement] = []
        counts: dict[str, int] = {}
        pos = out_len = 0
        rep = self._strategy.replace
        for sp in spans:
            start, end, typ = sp.start, sp.end, sp.type
            if start < pos:
                raise InputError("spans overlap or are not sorted")
            if start > pos:
                chunk = text[pos:start]
                parts.append(chunk)
                out_len += len(chunk)
            new = rep(text[start:end], sp, patient_id)
            parts.append(new)
            n = len(new)
            reps.append(Replacement(out_len, out_len + n, start, end, typ))
            out_len += n
            pos = end
            counts[typ] = counts.get(typ, 0) + 1
        parts.append(text[pos:])
        return DeidResult(
            "".join(parts), tuple(spans), tuple(reps), self.strategy, len(text), counts
        )

    def pipe(
        self, texts: Iterable[str], patient_ids: Iterable[str | None] | None = None
    ) -> Iterator[DeidResult]:
        """:meth:`deidentify` over many notes (``patient_ids`` aligned with ``texts``)."""
        if patient_ids is None:
            for t in texts:
                yield self.deidentify(t)
        else:
            for t, pid in zip(texts, patient_ids, strict=True):
                yield self.deidentify(t, pid)
