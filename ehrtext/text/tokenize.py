"""Chinese clinical tokenization: jieba's algorithm, a shipped medical dictionary, protected
patterns, and offsets into the original note.

How a note is cut:

1. :func:`ehrtext.text.normalize` (full-width → half-width, whitespace, control characters …),
   keeping an offset map back to the note as given.
2. Dictionary terms that contain non-Han characters (``2型糖尿病``, ``B超``, ``维生素B12``) are
   matched literally (Aho-Corasick, leftmost-longest) and kept whole.
3. Protected patterns from ``corpora/rules/tokenizer.json`` — dates, times, measurements with
   units (``150/90mmHg``, ``12.5×10^9/L``, ``36.5℃``, ``3天``), doses with a frequency
   (``0.5g bid``), lab names (``HbA1c``, ``NT-proBNP``, ``K+``), Latin words, numbers — are kept
   whole.
4. Everything else is blanked out of a *Han view* of the note, which the segmenter (rjieba by
   default, or a private ``jieba.Tokenizer`` instance) cuts in one call. Only runs of Han
   characters ever reach the segmenter, so both backends give the same tokens.

Example:
    >>> from ehrtext.text import Tokenizer
    >>> tok = Tokenizer()
    >>> [(t.text, t.start, t.end) for t in tok.tokenize("ＢＰ 150/90mmHg，2型糖尿病")]
    [('ＢＰ', 0, 2), ('150/90mmHg', 3, 13), ('，', 13, 14), ('2型糖尿病', 14, 19)]
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, compress
from operator import sub
from pathlib import Path
from typing import Any, NamedTuple

from ehrtext.errors import InputError, ResourceError, describe_type
from ehrtext.resources import corpus_path, load_json
from ehrtext.text.normalize import Normalized, NormalizerConfig, normalize, normalize_many

logger = logging.getLogger(__name__)

BACKENDS = ("rjieba", "jieba")
TOKENIZER_FORMAT = 1

# The characters jieba (Python) treats as Han. Only these reach the segmenter.
HAN_CLASS = "\u4e00-\u9fd5"
_PURE_HAN = re.compile(f"[{HAN_CLASS}]+")
# Sentence ends used by :meth:`Tokenizer.lines`.
SENTENCE_ENDS = frozenset("。!?;！？；")


class Token(NamedTuple):
    """One token. ``text`` is ``note[start:end]`` (the note as given); ``norm`` is normalized."""

    text: str
    start: int
    end: int
    norm: str


class Tokens(Sequence[Token]):
    """The tokens of one note, stored column-wise (cheap to build); indexing yields :class:`Token`.

    Example:
        >>> toks = Tokenizer().tokenize("无发热")
        >>> toks.norms, toks.starts, toks.ends
        (['无', '发热'], [0, 1], [1, 3])
    """

    __slots__ = ("original", "norms", "starts", "ends")

    def __init__(self, original: str, norms: list[str], starts: list[int], ends: list[int]):
        self.original = original
        self.norms = norms
        self.starts = starts
        self.ends = ends

    def __len__(self) -> int:
        return len(self.norms)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return Tokens(self.original, self.norms[index], self.starts[index], self.ends[index])
        s, e = self.starts[index], self.ends[index]
        return Token(self.original[s:e], s, e, self.norms[index])

    def __iter__(self) -> Iterator[Token]:
        original = self.original
        for n, s, e in zip(self.norms, self.starts, self.ends):
            yield Token(original[s:e], s, e, n)

    def __repr__(self) -> str:
        return f"<Tokens n={len(self)}>"

    @property
    def texts(self) -> list[str]:
        """The tokens as they appear in the original note."""
        o = self.original
        return [o[s:e] for s, e in zip(self.starts, self.ends)]

    def to_list(self) -> list[list]:
        """``[[norm, start, end], ...]``: JSON-friendly."""
        return [[n, s, e] for n, s, e in zip(self.norms, self.starts, self.ends)]


# --------------------------------------------------------------------------------------------
# protected patterns


def _alternation(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, factored as a trie so ``re`` does not try them one by one.

    Longer words win over their prefixes (alternatives of a node are ordered longest first).
    """
    trie: dict = {}
    for word in set(words):
        if not word:
            continue
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = True

    def emit(node: dict) -> str:
        ends_here = "" in node
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends_here:
            return f"(?:{body})?"
        return body

    return emit(trie)


ROMAN = "ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫ"
GRADE = "型度级期类"
CJK_OTHER = "\u3400-\u4dbf\u9fd6-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
# Separators of the Han view and placeholders; normalize() removes control characters, so
# none of them can occur in normalized text.
_SEP, _TOKSEP, _WS = "\x00", "\x01", "\x04"
_DOCSEP = "\x05"
_LIST_NUMBER = re.compile(r"[0-9]{1,2}\.")


def _first_char_tries(words: Iterable[str], first_class: str) -> str | None:
    """``(?<=c)suffixes`` branches for the words whose first character is in ``first_class``."""
    by_first: dict[str, list[str]] = {}
    cls = re.compile(f"[{first_class}]")
    for w in words:
        if w and cls.fullmatch(w[0]):
            by_first.setdefault(w[0], []).append(w[1:])
    branches = []
    for ch in sorted(by_first):
        suffixes = [x for x in by_first[ch] if x]
        body = _alternation(suffixes) if suffixes else ""
        if "" in by_first[ch] and body:
            body = f"(?:{body})?"
        branches.append(f"(?<={re.escape(ch)}){body}")
    return "(?:" + "|".join(branches) + ")" if branches else None


@lru_cache(maxsize=8)
def _compile_patterns(patterns_file: str | None) -> re.Pattern:
    """One regex, used with ``split``, whose matches are the protected tokens.

    It starts with a single character class so that ``re`` skips Han text at C speed (its
    charset-prefix search); the branch for the first character is chosen by a lookbehind.
    """
    if patterns_file is None:
        rules = load_json("rules", "tokenizer.json")
    else:
        try:
            rules = json.loads(Path(patterns_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ResourceError(f"cannot read tokenizer patterns {patterns_file}: {exc}") from None
    an = "A-Za-z0-9"
    labs = list(rules.get("lab_names", []))
    unit_ascii = _alternation(rules.get("units", []))
    unit_han = _alternation(rules.get("units_han", []))
    freq = _alternation(rules.get("frequencies", []))
    num = r"[0-9]+(?:\.[0-9]+)?"
    sci = rf"{num}(?:\^-?[0-9]+)?(?:[×xX*]10\^?-?[0-9]+)?"
    dose = rf"(?:\s?(?:{freq})(?![A-Za-z]))?" if freq else ""
    units = []
    if unit_ascii:
        units.append(rf"\s?(?:{unit_ascii})(?![{an}]){dose}")
    if unit_han:
        units.append(rf"(?:{unit_han}){dose}")
    unit = f"(?:{'|'.join(units)})?" if units else ""
    measure = (
        rf"[0-9]*(?:\.[0-9]+)?(?:\^-?[0-9]+)?(?:[×xX*]10\^?-?[0-9]+)?(?:(?:[-~/]|～){sci})*{unit}"
    )
    digit_labs = _first_char_tries(labs, "0-9")
    letter_labs = _first_char_tries(labs, "A-Za-z")
    digit_branch = [
        f"{digit_labs}(?![{an}])" if digit_labs else None,
        r"[0-9]{3}[-/.][0-9]{1,2}[-/.][0-9]{1,2}(?![0-9])",  # 2015-11-12
        r"[0-9]?:[0-9]{2}(?::[0-9]{2})?(?![0-9])",  # 10:30
        r"[0-9]{3}年[0-9]{1,2}月(?:[0-9]{1,2}[日号])?",  # 2015年11月12日
        r"[0-9]?月[0-9]{1,2}[日号]",  # 11月12日
        r"[0-9]?[时点][0-9]{1,2}分",  # 10时30分
        measure,  # 150/90mmHg, 12.5×10^9/L, 3天, 0.5g bid, and plain numbers
    ]
    letter_branch = [
        f"{letter_labs}(?![{an}])" if letter_labs else None,  # HbA1c, NT-proBNP, K+
        rf"(?<![A-Za-z][IVX])(?<=[IVX])[IVX]{{0,3}}[{GRADE}]",  # II型, III度
        r"[A-Za-z]*(?:[0-9]+[A-Za-z]+)*(?:-[A-Za-z0-9]+)*[+%]?",  # Latin words
    ]
    branches = [
        "(?<=[0-9])(?:" + "|".join(p for p in digit_branch if p) + ")",
        "(?<=[A-Za-z])(?:" + "|".join(p for p in letter_branch if p) + ")",
        r"(?<=\()(?:[+\-]{1,4}|±)\)",  # (-) (+) (+++) (±)
        r"(?<=[+#&._%\-])",  # characters jieba would glue to a Han run
        rf"(?<=[{ROMAN}])[{ROMAN}]*[{GRADE}]?",  # Ⅱ度
        r"(?<=\s)\s*",  # whitespace: never given to the segmenter
        f"(?<=[{CJK_OTHER}])",  # CJK outside jieba's Han range: one token each
    ]
    first = rf"[0-9A-Za-z(+#&._%\-{ROMAN}\s{CJK_OTHER}]"
    return re.compile(f"({first}(?:" + "|".join(branches) + "))")


# --------------------------------------------------------------------------------------------
# dictionaries


def _read_dict_lines(path: Path) -> Iterator[tuple[str, int | None, str | None]]:
    """Read a jieba-format dictionary: ``word [freq] [tag]`` per line; '#' starts a comment."""
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise ResourceError(f"cannot open dictionary {path}: {exc.strerror}") from None
    with fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            word, freq, tag = parts[0], None, None
            if len(parts) >= 2:
                if parts[1].isdigit():
                    freq = int(parts[1])
                    tag = parts[2] if len(parts) >= 3 else None
                else:
                    tag = parts[1]
            yield word, freq, tag


@lru_cache(maxsize=4)
def _medical_dict(path: str) -> tuple[tuple[str, int | None, str | None], ...]:
    return tuple(_read_dict_lines(Path(path)))


def default_medical_dict_path() -> Path:
    return corpus_path("dict", "medical_words.txt")


def default_stopwords_path() -> Path:
    return corpus_path("dict", "stopwords.txt")


@dataclass
class _UserWord:
    word: str
    freq: int | None
    tag: str | None


# --------------------------------------------------------------------------------------------
# the tokenizer


class Tokenizer:
    """jieba's segmentation algorithm with a medical dictionary, protected patterns and offsets.

    Args:
        backend: ``"rjieba"`` (jieba-rs, fast; the default) or ``"jieba"`` (the Python reference,
            a private ``jieba.Tokenizer`` instance: the global ``jieba`` state is never touched).
        medical_dict: use the shipped medical dictionary (True), none (False), or a path to a
            dictionary in jieba's ``word [freq] [tag]`` format.
        user_dicts: more dictionary files in the same format.
        stopwords: drop stopwords: False, True (the shipped list), a path, or a set of words.
        hmm: let jieba's HMM join unknown words (as jieba does by default).
        normalizer: :class:`NormalizerConfig` (or its dict) applied before cutting.
        patterns: a JSON file replacing ``corpora/rules/tokenizer.json``.

    Example:
        >>> tok = Tokenizer(backend="jieba")
        >>> tok.cut("双肺呼吸音粗，未闻及干湿性啰音")
        ['双肺', '呼吸音', '粗', ',', '未', '闻及', '干湿性啰音']
    """

    def __init__(
        self,
        backend: str = "rjieba",
        *,
        medical_dict: bool | str | Path = True,
        user_dicts: Sequence[str | Path] = (),
        stopwords: bool | str | Path | Iterable[str] = False,
        hmm: bool = True,
        normalizer: NormalizerConfig | dict | None = None,
        patterns: str | Path | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.hmm = bool(hmm)
        if normalizer is None:
            normalizer = NormalizerConfig()
        elif isinstance(normalizer, dict):
            normalizer = NormalizerConfig.from_dict(normalizer)
        self.normalizer = normalizer
        self.medical_dict = medical_dict
        # user dictionaries are read once, so the tokenizer never depends on the file later
        self.user_dicts = [str(p) for p in user_dicts]
        self._user_dict_entries: list[tuple[str, int | None, str | None]] = []
        for p in self.user_dicts:
            self._user_dict_entries.extend(_read_dict_lines(Path(p)))
        self.patterns_file = str(patterns) if patterns is not None else None
        self._pattern = _compile_patterns(self.patterns_file)
        # collapsed + stripped whitespace lets _stream mark whitespace with two str.replace
        self._simple_ws = normalizer.collapse_whitespace and normalizer.strip
        self._stopwords_setting = stopwords
        self.stopwords: frozenset[str] = self._load_stopwords(stopwords)
        self._user_words: list[_UserWord] = []  # added through add_word (saved in config)
        self._seg = None  # the segmenter, built lazily
        self._mixed: dict[str, str | None] = {}  # non-Han dictionary terms -> tag
        self._automaton = None
        self._mixed_anchors: frozenset[str] = frozenset()
        self._mixed_guard: re.Pattern | None = None
        self._automaton_dirty = True

    # ---- dictionaries --------------------------------------------------------------------

    def _load_stopwords(self, setting) -> frozenset[str]:
        if setting is False or setting is None:
            return frozenset()
        if setting is True:
            setting = default_stopwords_path()
        if isinstance(setting, (str, Path)):
            words = [w for w, _, _ in _read_dict_lines(Path(setting))]
        else:
            words = list(setting)
        return frozenset(self._norm_word(w) for w in words if isinstance(w, str) and w)

    def _norm_word(self, word: str) -> str:
        return normalize(word, self.normalizer).text

    def _dictionary_entries(self) -> Iterator[tuple[str, int | None, str | None]]:
        if self.medical_dict is True:
            yield from _medical_dict(str(default_medical_dict_path()))
        elif self.medical_dict:
            yield from _medical_dict(str(self.medical_dict))
        yield from self._user_dict_entries

    def _build_segmenter(self):
        if self.backend == "rjieba":
            import rjieba

            seg = rjieba.Jieba()
        else:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            seg = jieba.Tokenizer()
            seg.initialize()
        self._seg = seg
        if backend_is_rjieba := (self.backend == "rjieba"):
            hmm = self.hmm
            cut_fn = seg.cut
            self._cut = lambda text: cut_fn(text, hmm)
        else:
            hmm = self.hmm
            lcut = seg.lcut
            self._cut = lambda text: lcut(text, HMM=hmm)
        del backend_is_rjieba
        for word, freq, tag in self._dictionary_entries():
            self._add_to_segmenter(word, freq, tag)
        for uw in self._user_words:
            self._add_to_segmenter(uw.word, uw.freq, uw.tag)
        return seg

    @property
    def segmenter(self):
        """The backend instance (``rjieba.Jieba`` or ``jieba.Tokenizer``), built on first use."""
        return self._seg if self._seg is not None else self._build_segmenter()

    def _add_to_segmenter(self, word: str, freq: int | None, tag: str | None) -> None:
        word = self._norm_word(word)
        if not word or any(ch.isspace() for ch in word):
            return
        if _PURE_HAN.fullmatch(word):
            if self.backend == "rjieba":
                self._seg.add_word(word, freq, tag)
            else:
                self._seg.add_word(word, freq, tag)
        else:
            self._mixed[word] = tag
            self._automaton_dirty = True

    def add_word(self, word: str, freq: int | None = None, tag: str | None = None) -> None:
        """Add a word to this tokenizer (saved with :meth:`to_disk` and :attr:`config`).

        ``freq=None`` lets the backend choose a frequency high enough to keep the word whole
        (jieba's ``suggest_freq``). Words with non-Han characters (``B超``) are matched literally.
        """
        if not isinstance(word, str):
            raise TypeError(f"add_word expects a str, got {describe_type(word)}")
        word = word.strip()
        if not word:
            raise ValueError("add_word: the word is empty")
        if any(ch.isspace() for ch in word):
            raise ValueError("add_word: a dictionary word cannot contain whitespace")
        self._user_words.append(_UserWord(word, freq, tag))
        if self._seg is not None:
            self._add_to_segmenter(word, freq, tag)

    def load_userdict(self, path: str | Path) -> None:
        """Add the words of a jieba-format dictionary file (``word [freq] [tag]`` per line)."""
        entries = list(_read_dict_lines(Path(path)))
        self.user_dicts.append(str(path))
        self._user_dict_entries.extend(entries)
        if self._seg is not None:
            for word, freq, tag in entries:
                self._add_to_segmenter(word, freq, tag)

    def _mixed_automaton(self):
        """Aho-Corasick automaton of the literal (non-Han) terms, and the cheap pre-checks.

        A literal term can only occur where the protected-pattern split of the note yields its
        *anchor* (the longest protected piece of the term itself, e.g. ``2型`` for
        ``2型糖尿病``), so the automaton runs only on notes that contain an anchor, or one of the
        rare non-Han characters (``α``, ``·``) the patterns leave to the segmenter.
        """
        if self._seg is None:
            self._build_segmenter()
        if self._automaton_dirty:
            self._automaton = None
            self._mixed_anchors = frozenset()
            self._mixed_guard = None
            if self._mixed:
                import ahocorasick_rs

                words = sorted(self._mixed)
                anchors = set()
                guard_chars = set()
                for word in words:
                    pieces = self._pattern.split(word)[1::2]
                    if pieces:
                        anchors.add(max(pieces, key=len))
                    else:
                        guard_chars.update(ch for ch in word if not _PURE_HAN.match(ch))
                self._automaton = ahocorasick_rs.AhoCorasick(
                    words, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest
                )
                # a term right after a list number ("5.2型糖尿病") hides behind the piece "5.2型"
                numbered = {
                    f"{i}.{a}" for a in anchors if a[:1].isdigit() for i in range(100)
                }
                self._mixed_anchors = frozenset(anchors | numbered)
                if guard_chars:
                    self._mixed_guard = re.compile(
                        "[" + "".join(re.escape(c) for c in sorted(guard_chars)) + "]"
                    )
            self._automaton_dirty = False
        return self._automaton

    # ---- cutting -------------------------------------------------------------------------

    def _stream(self, s: str) -> str:
        """The tokens of normalized text ``s`` as one string, joined by ``\\x01``.

        Whitespace is kept as ``\\x04`` characters glued to the front of the next token, so
        that token lengths still add up to offsets into ``s``.

        How: the protected tokens and whitespace are split out with one regex; the Han chunks
        between them are joined with a separator and cut in ONE segmenter call; the protected
        tokens are put back in place of the separators with string operations. Everything per
        token runs in C.
        """
        cut = self._cut if self._seg is not None else self._build_cut()
        if self._automaton_dirty:
            self._mixed_automaton()
        parts = self._pattern.split(s)
        if len(parts) == 1:
            return _TOKSEP.join(cut(s))
        if self._automaton is not None and (
            not self._mixed_anchors.isdisjoint(parts[1::2])
            or (self._mixed_guard is not None and self._mixed_guard.search(s) is not None)
        ):
            # a literal dictionary term may be here
            spliced = self._splice_literals(s, parts)
            if spliced is not None:
                parts = spliced
        prots = parts[1::2]
        pieces = _TOKSEP.join(cut(_SEP.join(parts[0::2]))).split(_SEP)
        has_ws = (" " in s) or ("\n" in s)
        if has_ws and not self._simple_ws:
            prots = [_WS * len(p) if p.isspace() else p for p in prots]
        merged = [None] * (len(pieces) + len(prots))
        merged[0::2] = pieces
        merged[1::2] = prots
        stream = "".join(merged)
        if has_ws:
            if self._simple_ws:
                # collapsed, stripped text: every whitespace run is one ' ' or '\n' token
                stream = stream.replace(_TOKSEP + " " + _TOKSEP, _TOKSEP + _WS + _TOKSEP)
                stream = stream.replace(_TOKSEP + "\n" + _TOKSEP, _TOKSEP + _WS + _TOKSEP)
            stream = stream.replace(_WS + _TOKSEP, _WS)
        return stream

    def _unstream(self, stream: str) -> tuple[list[str], list[int], list[int]]:
        """(norms, starts, ends) from :meth:`_stream`'s string."""
        if not stream:
            return [], [], []
        if _WS in stream:
            ends = list(accumulate(map(len, stream.split(_TOKSEP))))
            norms = stream.replace(_WS, "").split(_TOKSEP)
            starts = list(map(sub, ends, map(len, norms)))
            if not norms[-1]:  # trailing whitespace only
                del norms[-1], starts[-1], ends[-1]
        else:
            norms = stream.split(_TOKSEP)
            ends = list(accumulate(map(len, norms)))
            starts = [0, *ends[:-1]]
        if self.stopwords:
            return self._drop_stopwords(norms, starts, ends)
        return norms, starts, ends

    def _drop_stopwords(
        self, norms: list[str], starts: list[int], ends: list[int]
    ) -> tuple[list[str], list[int], list[int]]:
        sw = self.stopwords
        keep = [n not in sw for n in norms]
        return list(compress(norms, keep)), list(compress(starts, keep)), list(compress(ends, keep))

    def _unstream_many(self, parts: list[str]) -> list[tuple[list[str], list[int], list[int]]]:
        """:meth:`_unstream` of each of ``parts`` (the streams of a batch's notes), with the
        offsets of the whole batch computed at once by numpy: a token ends where its
        separator stands in the joined streams, less the separators before it in its note
        (and starts after the whitespace glued to its front). Same result as note by note."""
        import numpy as np

        i64 = np.int64
        big = _TOKSEP.join(parts) + _TOKSEP  # an empty note is one empty token, dropped below
        code = np.frombuffer(big.encode("utf-32-le"), dtype=np.uint32)
        tok_end = np.flatnonzero(code == ord(_TOKSEP))  # one per token, in ``big``
        tok_start = np.empty_like(tok_end)
        tok_start[0] = 0
        tok_start[1:] = tok_end[:-1] + 1
        cnt = np.fromiter((p.count(_TOKSEP) + 1 for p in parts), dtype=i64, count=len(parts))
        first = np.cumsum(cnt) - cnt
        # end in the note = end in big - where the note starts in big - separators before it
        ends = tok_end - np.arange(len(tok_end), dtype=i64)
        ends -= np.repeat(tok_start[first] - first, cnt)
        lengths = tok_end - tok_start
        has_ws = _WS in big
        if has_ws:
            ws_before = np.zeros(len(code) + 1, dtype=i64)
            np.cumsum(code == ord(_WS), out=ws_before[1:])
            lengths -= ws_before[tok_end] - ws_before[tok_start]
        all_ends = ends.tolist()
        all_starts = (ends - lengths).tolist()
        out: list[tuple[list[str], list[int], list[int]]] = []
        add = out.append
        for part, a, n in zip(parts, first.tolist(), cnt.tolist(), strict=True):
            if not part:
                add(([], [], []))
                continue
            b = a + n
            if has_ws and _WS in part:
                norms = part.replace(_WS, "").split(_TOKSEP)
                if not norms[-1]:  # trailing whitespace only
                    del norms[-1]
                    b -= 1
            else:
                norms = part.split(_TOKSEP)
            if self.stopwords:
                add(self._drop_stopwords(norms, all_starts[a:b], all_ends[a:b]))
            else:
                add((norms, all_starts[a:b], all_ends[a:b]))
        return out

    def _segment(self, s: str) -> tuple[list[str], list[int], list[int]]:
        """Cut normalized text ``s``: (norms, starts, ends) with offsets into ``s``."""
        if not s:
            return [], [], []
        return self._unstream(self._stream(s))

    def _segment_many(self, docs: list[str]) -> list[tuple[list[str], list[int], list[int]]]:
        """:meth:`_segment` for a batch: one regex split and one segmenter call for all."""
        if len(docs) == 1:
            return [self._segment(docs[0])]
        stream = self._stream(_DOCSEP.join(docs))
        parts = [part.strip(_TOKSEP) for part in stream.split(_DOCSEP)]
        if len(stream) < 4096:  # numpy's fixed costs outweigh a few short notes
            return list(map(self._unstream, parts))
        return self._unstream_many(parts)

    def _build_cut(self):
        self._build_segmenter()
        return self._cut

    def _splice_literals(self, s: str, parts: list[str]) -> list[str] | None:
        """Put literal (non-Han) dictionary terms into the pattern's split of ``s`` as protected
        pieces; ``None`` when there is none.

        A term is taken only where it does not cut through a protected token (``副流感病毒3``
        is not cut out of ``…病毒3型``, whose ``3型`` is one token) — except right after a list
        number (``5.2型糖尿病`` is item 5, then 2型糖尿病) — nor through a run of Latin letters
        and digits. The split list is patched in place of the matches, not recomputed.
        """
        bounds = list(accumulate(map(len, parts)))
        n = len(s)
        out: list[str] = []
        i = off = 0  # the next material starts at parts[i][off:] (i is even: a Han chunk)
        taken = False
        for _, start, end in self._automaton.find_matches_as_indexes(s):
            k1 = bisect_right(bounds, start)  # the part that holds s[start]
            p1 = bounds[k1 - 1] if k1 else 0
            list_number = None
            if k1 % 2 == 1 and start > p1:
                list_number = s[p1:start]
                if not _LIST_NUMBER.fullmatch(list_number):
                    continue
            k2 = bisect_left(bounds, end)  # the part that holds s[end - 1]
            if k2 % 2 == 1 and end < bounds[k2]:
                continue
            if start > 0 and _is_alnum(s[start]) and _is_alnum(s[start - 1]):
                continue
            if end < n and _is_alnum(s[end - 1]) and _is_alnum(s[end]):
                continue
            if k1 < i or (k1 == i and start - p1 < off):
                continue  # overlaps what an earlier term took
            taken = True
            if k1 % 2 == 0:
                if k1 == i:
                    out.append(parts[i][off : start - p1])
                else:
                    out.append(parts[i][off:])
                    out.extend(parts[i + 1 : k1])
                    out.append(parts[k1][: start - p1])
            else:
                out.append(parts[i][off:])
                out.extend(parts[i + 1 : k1])  # ends with the chunk before the term
                if list_number is not None:
                    pieces = self._pattern.split(list_number)
                    out[-1] += pieces[0]
                    out.extend(pieces[1:])
            out.append(s[start:end])
            if k2 % 2 == 0:
                i, off = k2, end - (bounds[k2 - 1] if k2 else 0)
            else:
                i, off = k2 + 1, 0
        if not taken:
            return None
        out.append(parts[i][off:])
        out.extend(parts[i + 1 :])
        return out

    def normalize(self, text: str) -> Normalized:
        """Normalize with this tokenizer's settings (offset map included)."""
        return normalize(text, self.normalizer)

    def tokenize(self, text: str) -> Tokens:
        """Tokens of ``text`` with (start, end) offsets into ``text`` exactly as given.

        Raises:
            TypeError: ``text`` is not a ``str`` (the message names the type only).
        """
        if not isinstance(text, str):
            raise TypeError(f"tokenize expects a str, got {describe_type(text)}")
        n = normalize(text, self.normalizer)
        norms, starts, ends = self._segment(n.text)
        offsets = n.offsets
        if offsets.is_identity:
            return Tokens(text, norms, starts, ends)
        return Tokens(
            text,
            norms,
            offsets.starts_to_original(starts, check=False),
            offsets.ends_to_original(ends, check=False),
        )

    __call__ = tokenize

    def cut(self, text: str) -> list[str]:
        """The normalized tokens of ``text`` (no offsets: the fastest path)."""
        if not isinstance(text, str):
            raise TypeError(f"cut expects a str, got {describe_type(text)}")
        return self._segment(normalize(text, self.normalizer).text)[0]

    def lines(self, text: str, max_tokens: int = 1000) -> list[str]:
        """word2vec-ready lines: one space-joined line per sentence (and per line of the note).

        Spaces inside a token (``0.5g bid``) become ``_``. A sentence longer than
        ``max_tokens`` is split, so no line nears gensim's 10,000-token limit.
        """
        if not isinstance(text, str):
            raise TypeError(f"lines expects a str, got {describe_type(text)}")
        out: list[str] = []
        for line in normalize(text, self.normalizer).text.split("\n"):
            norms = self._segment(line)[0]
            current: list[str] = []
            for tok in norms:
                if tok in SENTENCE_ENDS:
                    if current:
                        out.append(" ".join(current))
                        current = []
                    continue
                current.append(tok.replace(" ", "_") if " " in tok else tok)
                if len(current) >= max_tokens:
                    out.append(" ".join(current))
                    current = []
            if current:
                out.append(" ".join(current))
        return out

    def pipe(self, texts: Iterable[str], batch_size: int = 256) -> Iterator[Tokens]:
        """Tokenize a stream of notes, in batches (one segmenter call per batch): the same
        tokens as :meth:`tokenize`, faster on many short texts.

        Raises ``TypeError`` (naming the type and the position) for a non-``str`` item.
        """
        batch: list[str] = []
        position = 0
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(
                    f"pipe expects str items, got {describe_type(text)} at position {position}"
                )
            position += 1
            batch.append(text)
            if len(batch) >= batch_size:
                yield from self._tokenize_batch(batch)
                batch = []
        if batch:
            yield from self._tokenize_batch(batch)

    def _tokenize_batch(self, texts: list[str]) -> list[Tokens]:
        normalized = normalize_many(texts, self.normalizer)
        out = []
        for text, n, (norms, starts, ends) in zip(
            texts, normalized, self._segment_many([n.text for n in normalized])
        ):
            offsets = n.offsets
            if not offsets.is_identity:
                starts = offsets.starts_to_original(starts, check=False)
                ends = offsets.ends_to_original(ends, check=False)
            out.append(Tokens(text, norms, starts, ends))
        return out

    # ---- configuration and persistence --------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings; ``Tokenizer.from_config(tok.config)`` rebuilds it."""
        stop = self._stopwords_setting
        if not isinstance(stop, (bool, str, Path)) and stop is not None:
            stop = sorted(self.stopwords)
        elif isinstance(stop, Path):
            stop = str(stop)
        md = self.medical_dict
        return {
            "format": TOKENIZER_FORMAT,
            "backend": self.backend,
            "hmm": self.hmm,
            "medical_dict": str(md) if isinstance(md, Path) else md,
            "user_dicts": list(self.user_dicts),
            "user_words": [[w.word, w.freq, w.tag] for w in self._user_words],
            "stopwords": stop,
            "normalizer": self.normalizer.to_dict(),
            "patterns": self.patterns_file,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Tokenizer:
        fmt = config.get("format", TOKENIZER_FORMAT)
        if fmt > TOKENIZER_FORMAT:
            raise InputError(
                f"tokenizer config format {fmt} is newer than this ehrtext supports "
                f"({TOKENIZER_FORMAT}): upgrade ehrtext"
            )
        tok = cls(
            config.get("backend", "rjieba"),
            medical_dict=config.get("medical_dict", True),
            user_dicts=config.get("user_dicts", ()),
            stopwords=config.get("stopwords", False),
            hmm=config.get("hmm", True),
            normalizer=config.get("normalizer"),
            patterns=config.get("patterns"),
        )
        for word, freq, tag in config.get("user_words", []):
            tok.add_word(word, freq, tag)
        return tok

    def __reduce__(self):
        return (Tokenizer.from_config, (self.config,))

    def to_disk(self, path: str | Path) -> None:
        """Save settings and every dictionary file into the folder ``path`` (self-contained)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = self.config
        words = [
            " ".join(str(x) for x in (w, f, t) if x is not None)
            for w, f, t in self._user_dict_entries
        ]
        if words:
            (path / "user_dict.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
            config["user_dicts"] = ["user_dict.txt"]
        if config["medical_dict"] not in (True, False):
            target = path / "medical_dict.txt"
            target.write_bytes(Path(config["medical_dict"]).read_bytes())
            config["medical_dict"] = "medical_dict.txt"
        if isinstance(config["stopwords"], str):
            (path / "stopwords.txt").write_text(
                "\n".join(sorted(self.stopwords)) + "\n", encoding="utf-8"
            )
            config["stopwords"] = "stopwords.txt"
        if config["patterns"]:
            (path / "patterns.json").write_bytes(Path(config["patterns"]).read_bytes())
            config["patterns"] = "patterns.json"
        config["dictionary_hash"] = self.dictionary_hash
        (path / "tokenizer.json").write_text(
            json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8"
        )

    @classmethod
    def from_disk(cls, path: str | Path) -> Tokenizer:
        """Load a tokenizer saved with :meth:`to_disk`."""
        path = Path(path)
        cfg_file = path / "tokenizer.json"
        try:
            config = json.loads(cfg_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResourceError(f"{cfg_file} is missing: not a saved ehrtext tokenizer") from None
        except json.JSONDecodeError as exc:
            raise ResourceError(f"{cfg_file} is not valid JSON: {exc}") from None
        config["user_dicts"] = [str(path / p) for p in config.get("user_dicts", [])]
        for key in ("medical_dict", "patterns"):
            if isinstance(config.get(key), str):
                config[key] = str(path / config[key])
        if isinstance(config.get("stopwords"), str):
            config["stopwords"] = str(path / config["stopwords"])
        return cls.from_config(config)

    @property
    def dictionary_hash(self) -> str:
        """SHA-256 over everything that decides the cut: dictionaries, user words, patterns,
        backend-independent settings. Saved in model directories to detect a changed dictionary."""
        h = hashlib.sha256()
        h.update(f"hmm={self.hmm};".encode())
        h.update(json.dumps(self.normalizer.to_dict(), sort_keys=True).encode())
        if self.medical_dict is True:
            h.update(default_medical_dict_path().read_bytes())
        elif self.medical_dict:
            h.update(Path(self.medical_dict).read_bytes())
        for w, f, t in self._user_dict_entries:
            h.update(f"{w}\t{f}\t{t}\n".encode())
        for w in self._user_words:
            h.update(f"{w.word}\t{w.freq}\t{w.tag}\n".encode())
        if self.patterns_file:
            h.update(Path(self.patterns_file).read_bytes())
        else:
            h.update(corpus_path("rules", "tokenizer.json").read_bytes())
        h.update(("stop:" + "\n".join(sorted(self.stopwords))).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"Tokenizer(backend={self.backend!r}, user_words={len(self._user_words)})"


def _is_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()
