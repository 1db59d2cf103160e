"""Dictionary concepts in Chinese clinical notes: diseases, symptoms, drugs, exams, procedures
and body parts, with offsets into the note exactly as given.

:class:`ConceptMatcher` finds the terms of the shipped lexicons (or of your own) in a note:
leftmost-longest, non-overlapping matches on the normalized text (full-width → half-width …),
mapped back to the original text, so ``note[c.start:c.end] == c.text``.

Example:
    >>> from ehrtext.text.concepts import ConceptMatcher
    >>> m = ConceptMatcher()
    >>> cs = m.find("否认冠状动脉粥样硬化性心脏病史，双肺呼吸音清")
    >>> [(c.text, c.start, c.end, c.category) for c in cs][:2]
    [('冠状动脉粥样硬化性心脏病', 2, 14, 'disease'), ('双肺', 16, 18, 'body_part')]

Lexicons (``corpora/dict``, see ``README_concepts.md``): ``medical_words.txt`` (its tags disease,
symptom, drug, exam; the generic ``medical`` and ``department`` tags are left out by default),
``concepts_body_part.txt`` and ``concepts_procedure.txt``. A term in a ``concepts_*`` file takes
that file's category even when ``medical_words.txt`` tags it otherwise (淋巴结 and 化疗 are CMeKG
"symptoms"). :data:`GENERIC_TERMS` (病史, 查体, 症状, 不适 ...) are not concepts by default.

Matching rules:

* leftmost-longest: 冠状动脉粥样硬化性心脏病, not 心脏病 inside it;
* a term that starts (ends) with a Latin letter or digit does not match right after (before)
  another one: no ``CT`` in ``CTA``, no ``2型糖尿病`` in ``12型糖尿病``;
* a body part gives way to a finding that starts inside it and reaches beyond it when keeping
  the body part would lose the finding: ``右下肺炎`` gives 肺炎, ``乙状结肠癌`` 结肠癌; but
  ``双肺结节`` gives 双肺 + 结节 and ``颜面浮肿`` 颜面 + 浮肿, because a term starts right after
  the body part and reaches as far (categories in :data:`YIELDING`);
* with ``tokenizer=``, a match must also start and end on token boundaries of that
  :class:`~ehrtext.text.tokenize.Tokenizer`;
* when a rule rejects a match, the clause around it is matched again among the allowed terms
  only, so a shorter or later term still wins (``维生素B1`` is rejected in ``维生素B12`` when only
  ``维生素B1`` and ``维生素`` are known; ``维生素`` is found).

Speed: one Aho-Corasick pass (``ahocorasick_rs``, leftmost-longest) over the UTF-16 code units
of the normalized text, or of a whole batch joined (:meth:`ConceptMatcher.pipe`); the rules are
checked with numpy over all matches at once (in plain Python for short texts), and only the
few matches a rule touches reach Python code. :class:`Concepts` stores columns and builds
:class:`Concept` tuples only when they are read. About 25-30 MB/s on real notes, normalization
included (``scripts/bench_concepts.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import chain, compress
from pathlib import Path
from typing import Any, NamedTuple

from ehrtext.errors import InputError, ResourceError, describe_type
from ehrtext.resources import corpus_path
from ehrtext.text.normalize import Normalized, NormalizerConfig, normalize, normalize_many

__all__ = [
    "ALL_CATEGORIES",
    "CATEGORIES",
    "GENERIC_TERMS",
    "YIELDING",
    "Concept",
    "ConceptMatcher",
    "Concepts",
    "read_lexicon",
]

#: Categories reported by default.
CATEGORIES = ("disease", "symptom", "drug", "exam", "procedure", "body_part")
#: Every category of the shipped lexicons (``medical`` is THUOCL's generic tag).
ALL_CATEGORIES = (*CATEGORIES, "department", "medical")
#: Shipped lexicon files (source name, file under corpora/dict, category or None = last column).
#: Later files win over earlier ones for a term that is in both.
SHIPPED_LEXICONS = (
    ("medical_words", "medical_words.txt", None),
    ("concepts_procedure", "concepts_procedure.txt", "procedure"),
    ("concepts_body_part", "concepts_body_part.txt", "body_part"),
)
#: Words of the shipped lexicons that are not concepts of a note: record headings, generic
#: words, vital-sign names (CMeKG lists 病史 as an exam, 不适 and 血压 as symptoms). Left out
#: by default (``exclude=``); a shorter term inside one still matches (外伤 in 外伤史).
GENERIC_TERMS = frozenset(
    """
    病史 查体 复查 症状 临床症状 辅助检查 相关检查 化验 化验检查 常规检查 专科检查 体格检查 体检
    实验室检查 影像学检查 影像学 生化 生化检查 急性期 免疫学方法 遗传学 内分泌 外伤史 生命体征
    治疗 检查 诊断 不适 睡眠 药物 诱因 神志 轻度 中度 重度 营养 服药 慢性病 疾病 病程 主症 老年
    起病 起病急 病程短 局限性 阵发性 光滑 不规则 粗糙 消化 大小便 大便 小便 饮食 体重 血压 心率
    呼吸 体温 脉搏 收缩压 舒张压 反射
    """.split()
)

#: Categories whose matches give way to an overlapping finding (see the module docstring).
YIELDING = frozenset({"body_part"})

FORMAT = 1
#: Batches with at least this many raw matches are checked with numpy (else in Python).
_NUMPY_MIN_MATCHES = 256
_ANY = (1 << 21) - 1  # no second character (beyond U+10FFFF)
_SEP = "\x05"  # joins a batch; normalize() removes control characters, so never in a note
_MINUS_ONE = (1).__rsub__  # x -> x - 1
_PLUS_ONE = (1).__add__
_USER = "user"
_LEXICON = "lexicon"


class Concept(NamedTuple):
    """One match. ``text`` is ``note[start:end]`` (the note as given); ``norm`` the lexicon term
    (normalized); ``source`` the lexicon it came from (``medical_words``, ``concepts_body_part``,
    ``concepts_procedure``, ``lexicon`` for a custom one, ``user`` for :meth:`add_terms`)."""

    start: int
    end: int
    text: str
    norm: str
    category: str
    source: str


class _Table(NamedTuple):
    """The active terms, by pattern id (immutable once built)."""

    terms: list[str]
    categories: list[str]
    sources: list[str]


class Concepts(Sequence[Concept]):
    """The concepts of one note, stored column-wise (cheap to build); indexing yields
    :class:`Concept`. The repr shows the count only, never note text.

    Example:
        >>> cs = ConceptMatcher().find("发热伴咳嗽")
        >>> cs.texts, cs.starts, cs.categories
        (['发热', '咳嗽'], [0, 3], ['symptom', 'disease'])
    """

    __slots__ = ("original", "starts", "ends", "_pids", "_table")

    def __init__(
        self, original: str, starts: list[int], ends: list[int], pids: list[int], table: _Table
    ):
        self.original = original
        self.starts = starts
        self.ends = ends
        self._pids = pids
        self._table = table

    def __len__(self) -> int:
        return len(self._pids)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return Concepts(
                self.original, self.starts[index], self.ends[index], self._pids[index], self._table
            )
        s, e, p = self.starts[index], self.ends[index], self._pids[index]
        t = self._table
        return Concept(s, e, self.original[s:e], t.terms[p], t.categories[p], t.sources[p])

    def __iter__(self) -> Iterator[Concept]:
        o, (terms, cats, srcs) = self.original, self._table
        for s, e, p in zip(self.starts, self.ends, self._pids, strict=True):
            yield Concept(s, e, o[s:e], terms[p], cats[p], srcs[p])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Concepts):
            return self.original == other.original and list(self) == list(other)
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Concepts n={len(self)}>"

    @property
    def texts(self) -> list[str]:
        """The matched text as it appears in the original note."""
        o = self.original
        return [o[s:e] for s, e in zip(self.starts, self.ends, strict=True)]

    @property
    def norms(self) -> list[str]:
        return list(map(self._table.terms.__getitem__, self._pids))

    @property
    def categories(self) -> list[str]:
        return list(map(self._table.categories.__getitem__, self._pids))

    @property
    def sources(self) -> list[str]:
        return list(map(self._table.sources.__getitem__, self._pids))

    def to_list(self) -> list[list]:
        """``[[start, end, norm, category], ...]``: JSON-friendly, no note text."""
        return [
            list(x) for x in zip(self.starts, self.ends, self.norms, self.categories, strict=True)
        ]


# --------------------------------------------------------------------------------------------
# lexicons


def read_lexicon(path: str | Path, category: str | None = None) -> list[tuple[str, str]]:
    """``(term, category)`` pairs of a lexicon file.

    One term a line, UTF-8; ``#`` starts a comment line. Fields are separated by tabs when the
    line has one (a term may then hold spaces), else by whitespace. With ``category`` every line
    is a term of that category (the first field is the term). Without it, the LAST field is the
    category: ``term category`` or jieba's ``word freq tag`` (``medical_words.txt``).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ResourceError(f"cannot read lexicon {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ResourceError(f"lexicon {path} is not UTF-8") from None
    out = []
    for lineno, line in enumerate(lines, 1):
        if "\t" in line:
            parts = [f.strip() for f in line.split("\t") if f.strip()]
        else:
            parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if category is not None:
            out.append((parts[0], category))
        elif len(parts) < 2 or parts[-1].isdigit():
            raise InputError(
                f"lexicon {path} line {lineno}: no category; write 'term category' "
                "(or 'word freq tag'), or pass the file's category"
            )
        else:
            out.append((parts[0], parts[-1]))
    return out


@lru_cache(maxsize=4)
def _shipped(config: NormalizerConfig) -> tuple[tuple[str, str, str], ...]:
    """(normalized term, category, source) of the shipped lexicons, later files winning."""
    merged: dict[str, tuple[str, str]] = {}
    for source, fname, category in SHIPPED_LEXICONS:
        pairs = read_lexicon(corpus_path("dict", fname), category)
        for (_term, cat), n in zip(pairs, _norm_terms([t for t, _ in pairs], config), strict=True):
            if n:
                merged[n] = (cat, source)
    return tuple((t, c, s) for t, (c, s) in merged.items())


def _norm_terms(terms: list[str], config: NormalizerConfig) -> list[str]:
    return [n.text for n in normalize_many(terms, config)]


def _is_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _numpy() -> Any:
    import numpy

    return numpy


#: Token starts and token ends of a batch, as boolean arrays over its positions.
_Tokens = tuple[Any, Any]


# --------------------------------------------------------------------------------------------
# the matcher


class _State:
    """Everything built from the active terms: automata, tables, the clause-boundary regex."""

    def __init__(self, table: _Table) -> None:
        import ahocorasick_rs

        self.ac = ahocorasick_rs
        self.table = table
        terms = table.terms
        if len(terms) >= 1 << 21:
            raise InputError(f"a concept lexicon holds at most {(1 << 21) - 1:,} terms")
        self.ac16 = (
            ahocorasick_rs.BytesAhoCorasick(
                [t.encode("utf-16-le", "surrogatepass") for t in terms],
                matchkind=ahocorasick_rs.MatchKind.LeftmostLongest,
            )
            if terms
            else None
        )
        self._ac_str = None
        self._ac_all = None
        self._index: dict[str, int] | None = None
        self.maxlen = max(map(len, terms), default=0)
        self.yields, yreach = _yield_table(table)
        # what the fast pass checks per match: bit 0 / 1 = the term starts / ends with a Latin
        # letter or digit, bit 2 = a yielding term that a finding may start inside
        self.flags = bytes(
            (1 if _is_alnum(t[0]) else 0)
            | (2 if _is_alnum(t[-1]) else 0)
            | (4 if i in self.yields else 0)
            for i, t in enumerate(terms)
        )
        self.any_flag = any(self.flags)
        self.any_edge = any(f & 3 for f in self.flags)
        # the first one or two characters after a yielding term that can continue a finding,
        # with how far past the term such a finding reaches at most (a cheap pre-check): for
        # Python a dict per term, for numpy sorted keys term << 42 | char << 21 | char (or
        # _ANY for a finding that ends one character past the term)
        self.ynext: dict[int, dict[str, int]] = {}
        for (p, head), far in yreach.items():
            self.ynext.setdefault(p, {})[head] = far
        np = _numpy()
        self.flags_np = np.frombuffer(self.flags, dtype=np.uint8)
        self.alnum_lut = np.array([_is_alnum(chr(c)) for c in range(128)], dtype=bool)
        keyed = sorted(
            ((p << 42) | (ord(h[0]) << 21) | (ord(h[1]) if len(h) > 1 else _ANY), far)
            for (p, h), far in yreach.items()
        )
        self.ykeys = np.array([k for k, _ in keyed], dtype=np.int64)
        self.yfar = np.array([f for _, f in keyed], dtype=np.int64)
        chars = set().union(*map(set, terms)) if terms else set()
        chars.discard(_SEP)
        # a clause ends at the first character that no term contains
        self.boundary = re.compile(
            "[^" + "".join(re.escape(c) for c in sorted(chars)) + "]" if chars else "(?s:.)"
        )

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {t: i for i, t in enumerate(self.table.terms)}
        return self._index

    @property
    def ac_str(self):
        """Leftmost-longest over str (texts with characters outside the BMP)."""
        if self._ac_str is None:
            self._ac_str = self.ac.AhoCorasick(
                self.table.terms, matchkind=self.ac.MatchKind.LeftmostLongest
            )
        return self._ac_str

    @property
    def ac_all(self):
        """Every (overlapping) occurrence: used only to re-match a clause after a rejection."""
        if self._ac_all is None:
            self._ac_all = self.ac.AhoCorasick(
                self.table.terms, matchkind=self.ac.MatchKind.Standard
            )
        return self._ac_all


_YieldRows = tuple[tuple[int, frozenset[str], tuple[int, ...]], ...]


def _yield_table(table: _Table) -> tuple[dict[int, _YieldRows], dict[tuple[int, str], int]]:
    """For each term of a :data:`YIELDING` category that a finding may start inside: the rows
    ``(k, next chars, lengths)`` of the findings that start ``k`` characters into it and reach
    beyond it (their first character past it is one of ``next chars``; lengths longest first);
    and, per ``(term, first one or two characters past it)``, how far past the term such a
    finding reaches at most."""
    terms, cats = table.terms, table.categories
    yielding = [i for i, c in enumerate(cats) if c in YIELDING]
    if not yielding:
        return {}, {}
    needed = {terms[i][k:] for i in yielding for k in range(1, len(terms[i]))}
    nexts: dict[str, dict[str, int]] = {}  # prefix -> {1-2 chars after it: how far at most}
    lens: dict[str, set[int]] = {}
    for t, c in zip(terms, cats, strict=True):
        if c in YIELDING:
            continue
        for j in range(1, len(t)):
            pre = t[:j]
            if pre in needed:
                beyond = nexts.setdefault(pre, {})
                head = t[j : j + 2]
                beyond[head] = max(beyond.get(head, 0), len(t) - j)
                lens.setdefault(pre, set()).add(len(t))
    rows_of: dict[int, _YieldRows] = {}
    reach_of: dict[tuple[int, str], int] = {}
    for i in yielding:
        t = terms[i]
        rows = []
        for k in range(1, len(t)):
            beyond = nexts.get(t[k:])
            if beyond is None:
                continue
            firsts = frozenset(h[0] for h in beyond)
            rows.append((k, firsts, tuple(sorted(lens[t[k:]], reverse=True))))
            for head, far in beyond.items():
                if far > reach_of.get((i, head), 0):
                    reach_of[(i, head)] = far
        if rows:
            rows_of[i] = tuple(rows)
    return rows_of, reach_of


class ConceptMatcher:
    """Dictionary matcher for medical concepts, with offsets into the original note.

    Args:
        lexicon: ``None`` for the shipped lexicons; or a lexicon file (``term category`` or
            ``word freq tag`` per line, see :func:`read_lexicon`), a mapping ``term -> category``
            or an iterable of ``(term, category)`` pairs.
        categories: the categories to report (default :data:`CATEGORIES`; add ``"medical"`` or
            ``"department"`` for those shipped tags). Terms added with :meth:`add_terms` are
            always reported.
        min_len: lexicon terms shorter than this (after normalization) are ignored.
        exclude: lexicon terms that are never concepts (default :data:`GENERIC_TERMS`; ``()``
            for none).
        normalizer: :class:`NormalizerConfig` (or its dict) applied to notes and terms; by
            default the tokenizer's, else ``NormalizerConfig()``.
        tokenizer: a :class:`~ehrtext.text.tokenize.Tokenizer`: only matches that start and end
            on its token boundaries are kept (slower: the note is tokenized).

    Example:
        >>> m = ConceptMatcher()
        >>> m.add_terms(["心脏神经官能症"], "disease")
        >>> [(c.text, c.category, c.source) for c in m.find("考虑心脏神经官能症")]
        [('心脏神经官能症', 'disease', 'user')]
    """

    def __init__(
        self,
        lexicon: str | Path | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        categories: Iterable[str] | None = None,
        min_len: int = 2,
        *,
        exclude: Iterable[str] | None = None,
        normalizer: NormalizerConfig | Mapping[str, Any] | None = None,
        tokenizer: Any = None,
    ) -> None:
        if tokenizer is not None and not hasattr(tokenizer, "pipe"):
            raise TypeError(
                f"tokenizer must be an ehrtext Tokenizer, got {describe_type(tokenizer)}"
            )
        self.tokenizer = tokenizer
        if normalizer is None:
            normalizer = tokenizer.normalizer if tokenizer is not None else NormalizerConfig()
        elif isinstance(normalizer, Mapping):
            normalizer = NormalizerConfig.from_dict(normalizer)
        elif not isinstance(normalizer, NormalizerConfig):
            raise TypeError(
                f"normalizer must be a NormalizerConfig or a dict, got {describe_type(normalizer)}"
            )
        self.normalizer: NormalizerConfig = normalizer
        if isinstance(min_len, bool) or not isinstance(min_len, int) or min_len < 1:
            raise ValueError(f"min_len must be an int >= 1, got {min_len!r}")
        self.min_len = min_len

        # the lexicon: None (shipped) or the custom (term, category) pairs as given
        self._lexicon: list[tuple[str, str]] | None
        if lexicon is None:
            self._lexicon = None
            known = set(ALL_CATEGORIES)
        else:
            if isinstance(lexicon, (str, Path)):
                pairs = read_lexicon(lexicon)
            elif isinstance(lexicon, Mapping):
                pairs = list(lexicon.items())
            else:
                pairs = list(lexicon)
            self._lexicon = [_check_pair(p, i) for i, p in enumerate(pairs)]
            known = {c for _, c in self._lexicon}

        if categories is None:
            cats = set(CATEGORIES) if lexicon is None else known
        else:
            if isinstance(categories, str):
                categories = [categories]
            cats = set()
            for c in categories:
                if not isinstance(c, str):
                    raise TypeError(f"categories must hold str, got {describe_type(c)}")
                cats.add(c)
            unknown = sorted(cats - known)
            if unknown:
                raise ValueError(f"unknown categories {unknown}; the lexicon has {sorted(known)}")
        self.categories: frozenset[str] = frozenset(cats)

        if exclude is None:
            self._exclude_default = True
            exclude = GENERIC_TERMS
        else:
            self._exclude_default = False
            if isinstance(exclude, str):
                raise TypeError("exclude must be an iterable of terms, not a str")
        self.exclude: frozenset[str] = frozenset(str(t) for t in exclude)

        self._user_terms: list[tuple[str, str]] = []
        self._state: _State | None = None

    # ---- terms ---------------------------------------------------------------------------

    def add_terms(self, terms: str | Iterable[str], category: str) -> None:
        """Add terms of ``category`` (any name, e.g. ``"disease"`` or ``"gene"``). They win over
        the lexicon for the same term, are always reported (whatever ``categories`` and
        ``exclude`` say) and are saved with :meth:`to_dict` / :meth:`to_disk`."""
        if not isinstance(category, str) or not category.strip() or category != category.strip():
            raise ValueError("add_terms: category must be a non-empty str without outer spaces")
        if isinstance(terms, str):
            terms = [terms]
        new = []
        for position, term in enumerate(terms):
            if not isinstance(term, str):
                raise TypeError(
                    f"add_terms expects str terms, got {describe_type(term)} at position {position}"
                )
            if not term.strip():
                raise ValueError(f"add_terms: the term at position {position} is empty")
            new.append((term, category))
        self._user_terms.extend(new)
        self._state = None

    def _entries(self) -> tuple[tuple[str, str, str], ...] | list[tuple[str, str, str]]:
        if self._lexicon is None:
            return _shipped(self.normalizer)
        norms = _norm_terms([t for t, _ in self._lexicon], self.normalizer)
        return [(n, c, _LEXICON) for n, (_, c) in zip(norms, self._lexicon, strict=True) if n]

    def _build(self) -> _State:
        active: dict[str, tuple[str, str]] = {}
        cats, excl, min_len = self.categories, self.exclude, self.min_len
        if excl:
            excl = frozenset(_norm_terms(sorted(excl), self.normalizer))
        for term, cat, src in self._entries():
            if cat in cats and len(term) >= min_len and term not in excl:
                active[term] = (cat, src)
        if self._user_terms:
            norms = _norm_terms([t for t, _ in self._user_terms], self.normalizer)
            for n, (_, cat) in zip(norms, self._user_terms, strict=True):
                if n:
                    active.pop(n, None)  # re-insert: the latest definition wins
                    active[n] = (cat, _USER)
        terms = list(active)
        table = _Table(terms, [c for c, _ in active.values()], [s for _, s in active.values()])
        state = _State(table)
        self._state = state
        return state

    def lookup(self, term: str) -> tuple[str, str] | None:
        """``(category, source)`` of an active term (normalized first), or ``None``."""
        if not isinstance(term, str):
            raise TypeError(f"lookup expects a str, got {describe_type(term)}")
        state = self._state or self._build()
        n = normalize(term, self.normalizer).text
        i = state.index.get(n)
        return None if i is None else (state.table.categories[i], state.table.sources[i])

    def __len__(self) -> int:
        """Number of active terms."""
        return len((self._state or self._build()).table.terms)

    def __contains__(self, term: object) -> bool:
        return isinstance(term, str) and self.lookup(term) is not None

    # ---- matching ------------------------------------------------------------------------

    def find(self, text: str | Normalized) -> Concepts:
        """The concepts of one note, offsets into ``text`` as given.

        ``text`` may also be the :class:`Normalized` result of ``normalize(note, config)`` with
        this matcher's ``normalizer`` (the note is then not normalized again).

        Raises:
            TypeError: ``text`` is not a ``str`` (the message names the type only).
        """
        if isinstance(text, Normalized):
            n = text
        elif isinstance(text, str):
            n = normalize(text, self.normalizer)
        else:
            raise TypeError(f"find expects a str, got {describe_type(text)}")
        return self._find_batch([n])[0]

    __call__ = find

    def pipe(self, texts: Iterable[str | Normalized], batch_size: int = 256) -> Iterator[Concepts]:
        """:meth:`find` for a stream of notes, batched: one normalization and one automaton pass
        per batch of ``batch_size`` notes. Same results as :meth:`find`.

        Raises ``TypeError`` (naming the type and the position) for a non-``str`` item.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        batch: list[str | Normalized] = []
        for position, text in enumerate(texts):
            if not isinstance(text, (str, Normalized)):
                raise TypeError(
                    f"pipe expects str items, got {describe_type(text)} at position {position}"
                )
            batch.append(text)
            if len(batch) >= batch_size:
                yield from self._pipe_batch(batch)
                batch = []
        if batch:
            yield from self._pipe_batch(batch)

    def _pipe_batch(self, batch: list[str | Normalized]) -> list[Concepts]:
        raw = [t for t in batch if not isinstance(t, Normalized)]
        if len(raw) == len(batch):
            return self._find_batch(normalize_many(raw, self.normalizer))
        done = iter(normalize_many(raw, self.normalizer))
        return self._find_batch([t if isinstance(t, Normalized) else next(done) for t in batch])

    def _find_batch(self, normalized: list[Normalized]) -> list[Concepts]:
        state = self._state or self._build()
        table = state.table
        texts = [n.text for n in normalized]
        joined = texts[0] if len(texts) == 1 else _SEP.join(texts)
        tokens = self._token_bounds(texts) if self.tokenizer is not None else None
        pids, starts, ends = self._match(state, joined, tokens)
        if len(texts) == 1:
            if not isinstance(starts, list):
                pids, starts, ends = pids.tolist(), starts.tolist(), ends.tolist()
            cuts = [len(pids)]
            locals_ = [(starts, ends)]
        elif isinstance(starts, list):
            cuts = []
            locals_: list[tuple[list[int], list[int]]] = []
            lo = base = 0
            for t in texts:
                hi = bisect_left(starts, base + len(t), lo)
                st, en = starts[lo:hi], ends[lo:hi]
                if base:
                    st = list(map(base.__rsub__, st))
                    en = list(map(base.__rsub__, en))
                cuts.append(hi)
                locals_.append((st, en))
                lo, base = hi, base + len(t) + 1
        else:  # numpy arrays: split the batch with numpy
            np = _numpy()
            lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
            bases = np.cumsum(lens + 1) - (lens + 1)
            cuts = np.searchsorted(starts, bases + lens).tolist()
            off = bases[np.searchsorted(bases, starts, side="right") - 1]
            s_all, e_all, pids = (starts - off).tolist(), (ends - off).tolist(), pids.tolist()
            locals_ = []
            lo = 0
            for hi in cuts:
                locals_.append((s_all[lo:hi], e_all[lo:hi]))
                lo = hi
        out = []
        lo = 0
        for n, hi, (st, en) in zip(normalized, cuts, locals_, strict=True):
            offsets = n.offsets
            if st and not offsets.is_identity:
                st = offsets.starts_to_original(st, check=False)
                # a match is never empty: its original end is that of its last character
                # (cheaper than ends_to_original, which builds a table per note)
                en = offsets.starts_to_original(list(map(_MINUS_ONE, en)), check=False)
                en = list(map(_PLUS_ONE, en))
            out.append(Concepts(n.original, st, en, pids[lo:hi], table))
            lo = hi
        return out

    def _token_bounds(self, texts: list[str]) -> _Tokens:
        """Token starts and ends of the normalized texts, as positions in the joined batch."""
        np = _numpy()
        size = sum(map(len, texts)) + len(texts)
        starts = np.zeros(size, dtype=bool)
        ends = np.zeros(size, dtype=bool)
        base = 0
        for t, toks in zip(texts, self.tokenizer.pipe(texts), strict=True):
            if toks.starts:
                starts[np.asarray(toks.starts, dtype=np.int64) + base] = True
                ends[np.asarray(toks.ends, dtype=np.int64) + base] = True
            base += len(t) + 1
        return starts, ends

    def _match(self, state: _State, s: str, tokens: _Tokens | None) -> tuple[Any, Any, Any]:
        """Accepted matches in ``s``: (pattern ids, starts, ends), sorted, non-overlapping; lists,
        or numpy arrays for many matches."""
        if state.ac16 is None or not s:
            return [], [], []
        enc = s.encode("utf-16-le", "surrogatepass")
        units = 2 if len(enc) == 2 * len(s) else 1  # 2: no characters outside the BMP
        raw = (
            state.ac16.find_matches_as_indexes(enc)
            if units == 2
            else state.ac_str.find_matches_as_indexes(s)
        )
        if not raw:
            return [], [], []
        if len(raw) >= _NUMPY_MIN_MATCHES:
            arrays, bad = self._checks_numpy(state, s, enc, raw, units, tokens)
            if bad:
                plan = self._resolve(state, s, *arrays, bad, tokens)
                arrays = _apply_numpy(arrays, plan)
            return arrays
        lists, bad = self._checks(state, s, raw, units, tokens)
        if bad:
            return _apply_lists(lists, self._resolve(state, s, *lists, bad, tokens))
        return lists

    def _checks(
        self, state: _State, s: str, raw: list, units: int, tokens: _Tokens | None
    ) -> tuple[tuple[list[int], list[int], list[int]], list[int]]:
        """Matches as lists (character offsets) and the indices of the rejected ones."""
        pids, starts, ends = zip(*raw, strict=True)
        if units == 2:
            if any(map((1).__and__, starts)):  # not on a character boundary: redo on str
                pids, starts, ends = zip(*state.ac_str.find_matches_as_indexes(s), strict=True)
            else:
                starts = map((1).__rrshift__, starts)
                ends = map((1).__rrshift__, ends)
        pids, starts, ends = list(pids), list(starts), list(ends)
        bad: list[int] = []
        if state.any_flag:
            flags, ynext, n = state.flags, state.ynext, len(s)
            for i in compress(range(len(pids)), map(flags.__getitem__, pids)):
                p, a, b = pids[i], starts[i], ends[i]
                f = flags[p]
                if f & 3 and (
                    (f & 1 and a and _is_alnum(s[a - 1])) or (f & 2 and b < n and _is_alnum(s[b]))
                ):
                    bad.append(i)
                elif (
                    f & 4
                    and _may_yield(ynext[p], s, b)
                    and _dominated(
                        state, s, p, a, b, tokens, _reach(state, s, pids, starts, ends, i, tokens)
                    )
                ):
                    bad.append(i)
        if tokens is not None:
            ts, te = tokens
            bad.extend(
                i
                for i, (a, b) in enumerate(zip(starts, ends, strict=True))
                if not (ts[a] and te[b])
            )
            bad = sorted(set(bad))
        return (pids, starts, ends), bad

    def _checks_numpy(
        self, state: _State, s: str, enc: bytes, raw: list, units: int, tokens: _Tokens | None
    ) -> tuple[tuple[Any, Any, Any], list[int]]:
        """:meth:`_checks` with numpy, C speed per match: the matches as arrays and the indices
        of the rejected ones."""
        np = _numpy()
        arr = np.fromiter(chain.from_iterable(raw), dtype=np.int64, count=3 * len(raw))
        arr = arr.reshape(-1, 3)
        if units == 2:
            if (arr[:, 1] & 1).any():  # not on a character boundary: redo on str
                raw = state.ac_str.find_matches_as_indexes(s)
                arr = np.fromiter(chain.from_iterable(raw), dtype=np.int64, count=3 * len(raw))
                arr = arr.reshape(-1, 3)
                units = 1
            else:
                arr[:, 1:] >>= 1
        pids, starts, ends = arr[:, 0], arr[:, 1], arr[:, 2]
        n = len(s)
        bad = np.zeros(len(pids), dtype=bool)
        if units == 2:
            codes = np.frombuffer(enc, dtype=np.uint16)
        else:
            codes = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        flags = state.flags_np[pids]
        if state.any_edge:
            lut = state.alnum_lut
            c = codes[np.maximum(starts - 1, 0)]
            bad |= ((flags & 1) != 0) & (starts > 0) & (c < 128) & lut[c & 127]
            c = codes[np.minimum(ends, n - 1)]
            after = (ends < n) & (c < 128)
            bad |= ((flags & 2) != 0) & after & lut[c & 127]
        if tokens is not None:
            ts, te = tokens
            bad |= ~(ts[starts] & te[ends])
        if state.yields:
            if not state.any_edge:
                c = codes[np.minimum(ends, n - 1)]
            ys = np.flatnonzero(((flags & 4) != 0) & ~bad & (ends < n))
            if ys.size:
                e = ends[ys]
                c2 = codes[np.minimum(e + 1, n - 1)].astype(np.int64)
                c2[e + 1 >= n] = _ANY
                keys = (pids[ys] << 42) | (c[ys].astype(np.int64) << 21)
                ykeys, yfar, last = state.ykeys, state.yfar, len(state.ykeys) - 1
                far = np.zeros(len(ys), dtype=np.int64)
                for k in (keys | c2, keys | _ANY):  # two characters, or a finding of one
                    pos = np.minimum(np.searchsorted(ykeys, k), last)
                    far = np.maximum(far, np.where(ykeys[pos] == k, yfar[pos], 0))
                hit = far > 0
                ys, far = ys[hit], far[hit]
                # the longest term at the end of the yielding match is the next fast match
                # when that starts there (no term starts there otherwise)
                nxt = np.minimum(ys + 1, len(pids) - 1)
                e = ends[ys]
                there = (ys + 1 < len(pids)) & (starts[nxt] == e)
                reach = np.where(there, ends[nxt], e)
                unknown = there & bad[nxt]  # that match is not allowed: look it up
                check = np.flatnonzero(unknown | (e + far > reach))
                if check.size:
                    pl, sl, el = pids[ys].tolist(), starts[ys].tolist(), e.tolist()
                    rl, ul, yl = reach.tolist(), unknown.tolist(), ys.tolist()
                    for j in check.tolist():
                        r = None if ul[j] else rl[j]
                        if _dominated(state, s, pl[j], sl[j], el[j], tokens, r):
                            bad[yl[j]] = True
        return (pids, starts, ends), np.flatnonzero(bad).tolist()

    def _resolve(
        self,
        state: _State,
        s: str,
        pids: Any,
        starts: Any,
        ends: Any,
        bad: list[int],
        tokens: _Tokens | None,
    ) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
        """How to replace each rejected match: by an exact leftmost-longest matching, among the
        allowed terms only, of the clause it sits in (up to the next character no term
        contains). Returns ``(lo, hi, matches)``: the fast matches ``lo:hi`` give way to
        ``matches`` (``(pattern id, start, end)``). The fast matches are lists or numpy arrays.

        Exact: the fast pass found no match between the previous accepted match and the
        rejected one, and no term crosses a clause end, so the fast matches after the clause are
        those of a pass started there.
        """
        plan = []
        cursor = 0
        n = len(s)
        flags = state.flags
        for b in bad:
            if b < cursor:
                continue  # inside a clause already re-matched
            a = int(starts[b])
            m = state.boundary.search(s, int(ends[b]))
            ce = m.start() if m else n
            cands = [
                (x + a, y + a, p)
                for p, x, y in state.ac_all.find_matches_as_indexes(s[a:ce], overlapping=True)
                if not (flags[p] & 3 or tokens is not None)
                or _valid(state, s, p, x + a, y + a, tokens)
            ]
            cands.sort(key=_longest_first)
            if state.yields:
                cands = _drop_dominated(state, cands)
            chosen = []
            pos = a
            for x, y, p in cands:
                if x >= pos:
                    chosen.append((p, x, y))
                    pos = y
            if isinstance(starts, list):
                cursor = bisect_left(starts, ce, b + 1)
            else:  # the matches before b start before a < ce
                cursor = int(starts.searchsorted(ce))
            plan.append((b, cursor, chosen))
        return plan

    # ---- configuration and persistence ---------------------------------------------------

    @property
    def lexicon_hash(self) -> str:
        """SHA-256 over the active terms and their categories (saved in model directories to
        detect a changed lexicon)."""
        table = (self._state or self._build()).table
        h = hashlib.sha256()
        for t, c in sorted(zip(table.terms, table.categories, strict=True)):
            h.update(f"{t}\t{c}\n".encode())
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings, custom lexicon and user terms included;
        ``ConceptMatcher.from_dict(m.to_dict())`` rebuilds the matcher."""
        return {
            "format": FORMAT,
            "lexicon": None if self._lexicon is None else [list(p) for p in self._lexicon],
            "categories": sorted(self.categories),
            "min_len": self.min_len,
            "exclude": None if self._exclude_default else sorted(self.exclude),
            "normalizer": self.normalizer.to_dict(),
            "user_terms": [list(p) for p in self._user_terms],
            "tokenizer": None if self.tokenizer is None else self.tokenizer.config,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConceptMatcher:
        if not isinstance(data, Mapping):
            raise InputError(f"concept matcher config must be a mapping, got {describe_type(data)}")
        fmt = data.get("format", FORMAT)
        if not isinstance(fmt, int) or fmt > FORMAT:
            raise InputError(
                f"concept matcher format {fmt!r} is newer than this ehrtext supports ({FORMAT}): "
                "upgrade ehrtext"
            )
        tokenizer = data.get("tokenizer")
        if tokenizer is not None:
            from ehrtext.text.tokenize import Tokenizer

            tokenizer = Tokenizer.from_config(tokenizer)
        try:
            lexicon = data.get("lexicon")
            m = cls(
                lexicon=None if lexicon is None else [tuple(p) for p in lexicon],
                categories=data.get("categories"),
                min_len=data.get("min_len", 2),
                exclude=data.get("exclude"),
                normalizer=data.get("normalizer"),
                tokenizer=tokenizer,
            )
            for term, category in data.get("user_terms", []):
                m.add_terms([term], category)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"concept matcher config is malformed: {exc}") from None
        return m

    def __reduce__(self):
        return (ConceptMatcher.from_dict, (self.to_dict(),))

    def to_disk(self, path: str | Path) -> None:
        """Save into the folder ``path``: ``concepts.json`` (settings and user terms),
        ``lexicon.tsv`` for a custom lexicon, ``tokenizer/`` for a tokenizer."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        if data["lexicon"] is not None:
            lines = [f"{t}\t{c}" for t, c in data["lexicon"]]
            (path / "lexicon.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            data["lexicon"] = "lexicon.tsv"
        if self.tokenizer is not None:
            self.tokenizer.to_disk(path / "tokenizer")
            data["tokenizer"] = "tokenizer"
        data["lexicon_hash"] = self.lexicon_hash
        (path / "concepts.json").write_text(
            json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8"
        )

    @classmethod
    def from_disk(cls, path: str | Path) -> ConceptMatcher:
        """Load a matcher saved with :meth:`to_disk`."""
        path = Path(path)
        cfg = path / "concepts.json"
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResourceError(f"{cfg} is missing: not a saved ehrtext concept matcher") from None
        except json.JSONDecodeError as exc:
            raise ResourceError(f"{cfg} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ResourceError(f"{cfg} is malformed: expected a JSON object")
        if isinstance(data.get("lexicon"), str):
            rows = read_lexicon(path / data["lexicon"])
            data["lexicon"] = [list(r) for r in rows]
        if isinstance(data.get("tokenizer"), str):
            from ehrtext.text.tokenize import Tokenizer

            data["tokenizer"] = Tokenizer.from_disk(path / data["tokenizer"]).config
        data.pop("lexicon_hash", None)
        return cls.from_dict(data)

    def __repr__(self) -> str:
        lex = "shipped" if self._lexicon is None else f"custom({len(self._lexicon)})"
        return (
            f"ConceptMatcher(lexicon={lex}, categories={sorted(self.categories)}, "
            f"user_terms={len(self._user_terms)}, tokenizer={self.tokenizer is not None})"
        )


def _apply_lists(
    lists: tuple[list[int], list[int], list[int]],
    plan: list[tuple[int, int, list[tuple[int, int, int]]]],
) -> tuple[list[int], list[int], list[int]]:
    """The matches with the replacements of :meth:`ConceptMatcher._resolve` made."""
    pids, starts, ends = lists
    op: list[int] = []
    os_: list[int] = []
    oe: list[int] = []
    cursor = 0
    for lo, hi, chosen in plan:
        op += pids[cursor:lo]
        os_ += starts[cursor:lo]
        oe += ends[cursor:lo]
        for p, x, y in chosen:
            op.append(p)
            os_.append(x)
            oe.append(y)
        cursor = hi
    op += pids[cursor:]
    os_ += starts[cursor:]
    oe += ends[cursor:]
    return op, os_, oe


def _apply_numpy(
    arrays: tuple[Any, Any, Any], plan: list[tuple[int, int, list[tuple[int, int, int]]]]
) -> tuple[Any, Any, Any]:
    """:func:`_apply_lists` for numpy arrays."""
    np = _numpy()
    pids, starts, ends = arrays
    keep = np.ones(len(pids), dtype=bool)
    added = []
    for lo, hi, chosen in plan:
        keep[lo:hi] = False
        added.extend(chosen)
    extra = np.array(added, dtype=np.int64).reshape(-1, 3)
    pids = np.concatenate([pids[keep], extra[:, 0]])
    starts = np.concatenate([starts[keep], extra[:, 1]])
    ends = np.concatenate([ends[keep], extra[:, 2]])
    order = np.argsort(starts, kind="stable")
    return pids[order], starts[order], ends[order]


def _longest_first(c: tuple[int, int, int]) -> tuple[int, int]:
    return c[0], -c[1]


def _valid(state: _State, s: str, p: int, x: int, y: int, tokens: _Tokens | None) -> bool:
    """Term ``p`` at ``s[x:y]`` passes the Latin/digit-run and token-boundary rules."""
    f = state.flags[p] & 3
    if f and ((f & 1 and x and _is_alnum(s[x - 1])) or (f & 2 and y < len(s) and _is_alnum(s[y]))):
        return False
    return tokens is None or bool(tokens[0][x] and tokens[1][y])


def _dominated(
    state: _State,
    s: str,
    p: int,
    a: int,
    e: int,
    tokens: _Tokens | None,
    reach: int | None = None,
) -> bool:
    """Whether the yielding match ``p`` at ``s[a:e]`` gives way: a finding (an allowed term of a
    non-yielding category) starts inside it and ends at ``y > e``, and no allowed term starts at
    ``e`` and reaches ``y``. ``reach``: the end of the longest allowed term at ``e`` (``e`` when
    there is none), if the caller knows it."""
    index, cats = state.index, state.table.categories
    n = len(s)
    if reach is None:
        reach = e
        for z in range(min(n, e + state.maxlen), e, -1):
            r = index.get(s[e:z])
            if r is not None and _valid(state, s, r, e, z, tokens):
                reach = z
                break
    nxt = s[e : e + 1]
    for k, chars, lens in state.yields[p]:
        if nxt not in chars:
            continue
        x = a + k
        for length in lens:  # longest first
            y = x + length
            if y <= reach:
                break
            if y > n:
                continue
            q = index.get(s[x:y])
            if q is not None and cats[q] not in YIELDING and _valid(state, s, q, x, y, tokens):
                return True
    return False


def _may_yield(heads: dict[str, int], s: str, e: int) -> bool:
    """Whether a finding may continue past ``e`` (its first one or two characters there)."""
    return s[e : e + 2] in heads or s[e : e + 1] in heads


def _reach(state: _State, s: str, pids, starts, ends, i: int, tokens: _Tokens | None) -> int | None:
    """End of the longest allowed term at ``ends[i]``, read off the leftmost-longest pass: its
    next match, when it starts there, is the longest term there (``None``: not allowed, unknown)."""
    e = ends[i]
    j = i + 1
    if j == len(pids) or starts[j] != e:
        return e  # no term starts at e
    return ends[j] if _valid(state, s, pids[j], e, ends[j], tokens) else None


def _drop_dominated(state: _State, cands: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """``cands`` (allowed matches sorted by start, longest first) without the yielding matches
    that give way (the rule of :func:`_dominated`, on the candidate list)."""
    cats = state.table.categories
    xs = [c[0] for c in cands]
    reach: dict[int, int] = {}
    for x, y, _ in cands:
        if y > reach.get(x, -1):
            reach[x] = y
    out = []
    for x, y, p in cands:
        if cats[p] in YIELDING:
            lo, hi = bisect_left(xs, x + 1), bisect_left(xs, y)
            covered = reach.get(y, -1)
            if any(
                cands[j][1] > y and cats[cands[j][2]] not in YIELDING and covered < cands[j][1]
                for j in range(lo, hi)
            ):
                continue
        out.append((x, y, p))
    return out


def _check_pair(pair: Any, position: int) -> tuple[str, str]:
    try:
        term, category = pair
    except (TypeError, ValueError):
        raise InputError(
            f"lexicon entry {position}: expected a (term, category) pair, got {describe_type(pair)}"
        ) from None
    if not isinstance(term, str) or not isinstance(category, str):
        raise InputError(f"lexicon entry {position}: term and category must be str")
    if not term.strip() or not category.strip():
        raise InputError(f"lexicon entry {position}: empty term or category")
    return term, category
