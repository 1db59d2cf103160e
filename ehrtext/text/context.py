"""ConText for Chinese EMR notes: is a concept negated, uncertain, historical, of a relative,
or hypothetical?

Rules are data (``corpora/rules/context.json``). A :class:`ContextRule` is a literal ``cue``
(``否认``) or a regex ``pattern`` with a ``category``:

=====================  ================  =========================================
category               flag              cues (examples)
=====================  ================  =========================================
NEGATED_EXISTENCE      ``negated``       无, 否认, 未见, 未闻及, 阴性, (-), 消失
POSSIBLE               ``uncertain``     考虑, 可能, 不除外, 待排, 疑似, ?
HISTORICAL             ``historical``    既往, 曾, 史 (高血压病史10年)
FAMILY                 ``family``        父亲, 母亲, 1姐, 家族中, 家族史
HYPOTHETICAL           ``hypothetical``  如, 若, 一旦, 必要时, 不适随诊
=====================  ================  =========================================

and a ``direction``: ``forward`` (modifies what follows), ``backward`` (what precedes),
``bidirectional``, ``pseudo`` (looks like a cue but modifies nothing: ``无明显诱因`` is no
negation of the pain that follows) or ``terminate`` (ends scopes: ``但``, ``现``, ``目前``).

Scopes. A cue's scope never crosses a sentence end (``。；;！？`` a newline, an enumerator
``1.`` ``2、`` ``①``, a section header) and, unless the rule says ``stop_at_comma: false``,
no comma or colon either; it ends at a terminator, at the next cue of the same category and
after ``max_scope`` characters. Enumerations joined by ``、 及 和 与 或`` stay in one scope,
so ``否认高血压、糖尿病、冠心病史`` negates all three and ``无胸痛及肩背部放射痛`` both.
Cues that lie wholly inside a concept span are part of the concept, not modifiers
(``无痛性血尿``, ``家族性高胆固醇血症``).

Sections give defaults: a concept in a section with attribute ``history`` (既往史) is
historical, one with ``family`` (家族史) is a relative's. ``historical`` describes the
patient's own past, so a family mention is never historical.

Matching runs on the normalized text (:func:`ehrtext.text.normalize`; pass a
:class:`~ehrtext.text.normalize.Normalized` to normalize once per note); spans, cues and
scopes are all offsets into the text AS GIVEN. At one place the longest cue wins (pseudo
``无明显诱因`` over ``无``); on a tie a pattern wins over a literal cue. :meth:`ConText.find_cues`
lists the cues of a note with their scopes.

Speed: one Aho-Corasick pass for the literal cues (``ahocorasick_rs``) and one regex scan for
the patterns; scope limits are searched in each cue's window only; concepts are swept in order
of their start. About 2 µs of Python per cue and per concept: ~12 MB/s of EMR notes with their
sections. :class:`~ehrtext.text.pipeline.TextPipeline` runs the same rules over a whole batch of
notes at once (``ConText._apply_many``: numpy per batch instead of Python per cue and concept,
the same results): ~1.8x that.

Example:
    >>> from ehrtext.text.context import ConText
    >>> note = "否认高血压、糖尿病史，无明显诱因出现胸痛，考虑冠心病可能。"
    >>> spans = [(2, 5), (6, 9), (18, 20), (23, 26)]   # 高血压 糖尿病 胸痛 冠心病
    >>> [(a.negated, a.uncertain, a.historical) for a in ConText().apply(note, spans)]
    [(True, False, True), (True, False, True), (False, False, False), (False, True, False)]
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, repeat
from operator import sub
from typing import Any, NamedTuple

from ehrtext.errors import InputError, ResourceError, describe_type
from ehrtext.resources import load_json
from ehrtext.text.normalize import Normalized, NormalizerConfig, normalize

__all__ = [
    "CATEGORIES",
    "Assertion",
    "Assertions",
    "ConText",
    "ContextRule",
    "Cue",
]

CONTEXT_FORMAT = 1

#: Category -> the flag of :class:`Assertion` it sets.
CATEGORIES: dict[str, str] = {
    "NEGATED_EXISTENCE": "negated",
    "POSSIBLE": "uncertain",
    "HISTORICAL": "historical",
    "FAMILY": "family",
    "HYPOTHETICAL": "hypothetical",
}
DIRECTIONS = ("forward", "backward", "bidirectional", "pseudo", "terminate")
SCOPE_UNITS = ("chars", "tokens")
_DEFAULT_MAX_SCOPE = {"forward": 40, "backward": 25, "bidirectional": 25}
#: Without tokens from the caller, a token limit counts this many characters a token.
CHARS_PER_TOKEN = 2
# Section attributes that give a default category.
_SECTION_DEFAULTS = (("history", "HISTORICAL"), ("family", "FAMILY"))

# Sentence ends: punctuation, newlines and enumerators (1. 2、 3) ① (1) 一、), in normalized text.
_SENTENCE_END_RE = (
    r"[。;!?；！？\n①-⑳]|[\d(一二三四五六七八九十](?:(?<=\d)(?<![\d.]\d)\d?[.、)](?![\d%])"
    r"|(?<=\()\d{1,2}\)|(?<=[一二三四五六七八九十])[一二三四五六七八九十]?、)"
)
# The characters a boundary match may start with, in three classes: a comma or colon (a "c"
# match, always), a sentence-end mark (an "s" match, always), and the characters where only
# the regex can tell (the starts of enumerators: digits, brackets, numerals, and on the
# reversed text their ends). ``_Boundaries`` relies on these classes.
_COMMA_CLASS = r"[,:，：]"
_STOP_CLASS = r"[。;!?；！？\n①-⑳]"
_FIRST_CLASS = r"[,:，：。;!?；！？\n①-⑳\d(一二三四五六七八九十]"
_FIRST_CLASS_REV = r"[,:，：。;!?；！？\n①-⑳.、)]"
_SENTENCE_END_REV_RE = (
    rf"{_STOP_CLASS}"
    r"|(?<![\d%])[.、)]\d{1,2}(?![\d.])|\)\d{1,2}\(|、[一二三四五六七八九十]{1,2}"
)
# Sentence ends (group "s") and clause ends (commas, colons: group "c"), searched in the short
# window of one scope; the leading lookahead lets ``re`` skip other characters at C speed.
_BOUNDARY = re.compile(rf"(?={_FIRST_CLASS})(?:(?P<c>{_COMMA_CLASS})|(?P<s>{_SENTENCE_END_RE}))")
# The same on the REVERSED text, so that the last boundary before a cue is one ``search``.
_BOUNDARY_REV = re.compile(
    rf"(?={_FIRST_CLASS_REV})(?:(?P<c>{_COMMA_CLASS})|(?P<s>{_SENTENCE_END_REV_RE}))"
)
# Sentence ends alone, for scopes that cross commas: no "s" match starts with a comma, so the
# first match of these is the first "s" match of the two above.
_SENTENCE = re.compile(rf"(?=[。;!?；！？\n①-⑳\d(一二三四五六七八九十])(?:{_SENTENCE_END_RE})")
_SENTENCE_REV = re.compile(rf"(?=[。;!?；！？\n①-⑳.、)])(?:{_SENTENCE_END_REV_RE})")


# --------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class ContextRule:
    """One ConText rule: a literal ``cue`` or a regex ``pattern``, a category and a direction.

    ``max_scope`` (default by direction: forward 40, backward and bidirectional 25) counts
    ``scope_unit`` -- characters, or tokens when the caller passes tokens to
    :meth:`ConText.apply`. ``categories`` (terminate rules only) lists the categories whose
    scopes it ends (all when empty).

    Example:
        >>> rule = ContextRule(cue="未见", category="NEGATED_EXISTENCE", direction="bidirectional")
        >>> ContextRule.from_dict(rule.to_dict()) == rule
        True
    """

    cue: str | None = None
    pattern: str | None = None
    category: str | None = None
    direction: str = "forward"
    max_scope: int | None = None
    scope_unit: str = "chars"
    stop_at_comma: bool = True
    categories: tuple[str, ...] = ()
    comment: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        label = self.label
        if (self.cue is None) == (self.pattern is None):
            raise InputError(f"context rule {label}: give exactly one of 'cue' and 'pattern'")
        text = self.cue if self.cue is not None else self.pattern
        if not isinstance(text, str) or not text:
            raise InputError(f"context rule {label}: 'cue'/'pattern' must be a non-empty string")
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise InputError(f"context rule {label}: bad regex ({exc})") from None
            if compiled.groups:
                raise InputError(
                    f"context rule {label}: use non-capturing groups (?:...) in patterns"
                )
            if compiled.match(""):
                raise InputError(f"context rule {label}: the pattern matches the empty string")
        if self.direction not in DIRECTIONS:
            raise InputError(f"context rule {label}: direction must be one of {DIRECTIONS}")
        if self.direction in ("pseudo", "terminate"):
            if self.category is not None and self.category not in CATEGORIES:
                raise InputError(f"context rule {label}: unknown category {self.category!r}")
        elif self.category not in CATEGORIES:
            raise InputError(f"context rule {label}: category must be one of {sorted(CATEGORIES)}")
        if self.max_scope is not None and (
            not isinstance(self.max_scope, int)
            or isinstance(self.max_scope, bool)
            or self.max_scope < 0
        ):
            raise InputError(f"context rule {label}: max_scope must be a non-negative integer")
        if self.scope_unit not in SCOPE_UNITS:
            raise InputError(f"context rule {label}: scope_unit must be one of {SCOPE_UNITS}")
        if not isinstance(self.stop_at_comma, bool):
            raise InputError(f"context rule {label}: stop_at_comma must be true or false")
        if isinstance(self.categories, str) or not isinstance(self.categories, Iterable):
            raise InputError(f"context rule {label}: 'categories' must be a list")
        cats = tuple(self.categories)
        bad = [c for c in cats if c not in CATEGORIES]
        if bad:
            raise InputError(f"context rule {label}: unknown categories {bad}")
        if cats and self.direction != "terminate":
            raise InputError(f"context rule {label}: only terminate rules take 'categories'")
        object.__setattr__(self, "categories", cats)

    @property
    def label(self) -> str:
        """The cue or pattern (rule text, never note text), for messages and results."""
        return repr(self.cue if self.cue is not None else self.pattern)

    @property
    def scope(self) -> int:
        """``max_scope`` or its default for the direction."""
        if self.max_scope is not None:
            return self.max_scope
        return _DEFAULT_MAX_SCOPE.get(self.direction, 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the format of ``corpora/rules/context.json``); defaults
        are left out."""
        out: dict[str, Any] = {}
        if self.cue is not None:
            out["cue"] = self.cue
        else:
            out["pattern"] = self.pattern
        if self.category is not None:
            out["category"] = self.category
        out["direction"] = self.direction
        if self.max_scope is not None:
            out["max_scope"] = self.max_scope
        if self.scope_unit != "chars":
            out["scope_unit"] = self.scope_unit
        if not self.stop_at_comma:
            out["stop_at_comma"] = False
        if self.categories:
            out["categories"] = list(self.categories)
        if self.comment:
            out["comment"] = self.comment
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContextRule:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(d, Mapping):
            raise InputError(f"a context rule must be an object, got {describe_type(d)}")
        known = {
            "cue",
            "pattern",
            "category",
            "direction",
            "max_scope",
            "scope_unit",
            "stop_at_comma",
            "categories",
            "comment",
        }
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            label = d.get("cue", d.get("pattern"))
            raise InputError(f"context rule {label!r}: unknown key(s) {unknown}")
        return cls(**{k: d[k] for k in d})


# --------------------------------------------------------------------------------------------
# Results


class Cue(NamedTuple):
    """A cue found in the note and its scope (offsets into the note as given).

    ``direction`` is the rule's, or ``"section"`` for a default given by a section, whose
    header is then ``start:end`` and whose ``rule`` is the section name.
    """

    start: int
    end: int
    category: str
    direction: str
    scope_start: int
    scope_end: int
    rule: str


class Assertion(NamedTuple):
    """The assertion status of one concept span (offsets into the note as given).

    ``cues`` holds the cues that set the flags (section defaults included). A named tuple:
    cheap to build for every concept of every note.

    Example:
        >>> a = ConText().apply("母亲有高血压病史", [(3, 6)])[0]
        >>> a.family, a.historical, a.affirmed, [c.category for c in a.cues]
        (True, False, False, ['FAMILY'])
    """

    start: int
    end: int
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    family: bool = False
    hypothetical: bool = False
    cues: tuple[Cue, ...] = ()

    @property
    def affirmed(self) -> bool:
        """No flag set: the concept is asserted as present, now, in the patient."""
        return not (
            self.negated or self.uncertain or self.historical or self.family or self.hypothetical
        )

    def flags(self) -> dict[str, bool]:
        """``{"negated": …, "uncertain": …, "historical": …, "family": …, "hypothetical": …}``."""
        return {
            "negated": self.negated,
            "uncertain": self.uncertain,
            "historical": self.historical,
            "family": self.family,
            "hypothetical": self.hypothetical,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (offsets and rule texts, never note text)."""
        out: dict[str, Any] = {"start": self.start, "end": self.end, **self.flags()}
        out["cues"] = [c._asdict() for c in self.cues]
        return out


class Assertions(Sequence[Assertion]):
    """The assertions of one note's concepts, stored column-wise (cheap to build, nothing for
    the garbage collector to walk per concept); indexing and iteration yield
    :class:`Assertion`. Equal to the list of the same assertions. What
    :class:`~ehrtext.text.pipeline.TextPipeline` returns, beside its column-wise
    :class:`~ehrtext.text.tokenize.Tokens` and :class:`~ehrtext.text.concepts.Concepts`.

    Example:
        >>> from ehrtext.text.pipeline import TextPipeline
        >>> xs = TextPipeline(tokenize=False).annotate("否认高血压、糖尿病史").assertions
        >>> xs.negated, xs[0].historical, len(xs)
        ([True, True], True, 2)
    """

    __slots__ = (
        "starts", "ends", "negated", "uncertain", "historical", "family", "hypothetical",
        "_cues", "_plan",
    )  # fmt: skip

    def __init__(
        self,
        starts: list[int],
        ends: list[int],
        negated: list[bool],
        uncertain: list[bool],
        historical: list[bool],
        family: list[bool],
        hypothetical: list[bool],
        cues: list[tuple[Cue, ...]],
    ) -> None:
        self.starts = starts
        self.ends = ends
        self.negated = negated
        self.uncertain = uncertain
        self.historical = historical
        self.family = family
        self.hypothetical = hypothetical
        self._cues = cues
        self._plan: _NoteCues | None = None  # the cues, not made yet

    @property
    def cues(self) -> list[tuple[Cue, ...]]:
        """The cues of each assertion (a tuple of :class:`Cue` each). The batch path of
        :class:`ConText` makes these objects on first access only: most readers want the
        flags, and a batch holds tens of thousands of cues."""
        cues = self._cues
        if cues is None:
            cues = self._cues = self._plan.make()  # type: ignore[union-attr]
            self._plan = None
        return cues

    def __reduce__(self) -> tuple[type, tuple[list, ...]]:
        return Assertions, self._columns()

    @classmethod
    def from_list(cls, assertions: Iterable[Assertion]) -> Assertions:
        """The columns of a list of :class:`Assertion`."""
        rows = list(assertions)
        if not rows:
            return cls([], [], [], [], [], [], [], [])
        return cls(*map(list, zip(*rows, strict=True)))

    def _columns(self) -> tuple[list, ...]:
        return (
            self.starts, self.ends, self.negated, self.uncertain, self.historical, self.family,
            self.hypothetical, self.cues,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return Assertions(*(col[index] for col in self._columns()))
        return _new(Assertion, [col[index] for col in self._columns()])

    def __iter__(self) -> Iterator[Assertion]:
        return map(_new, repeat(Assertion), zip(*self._columns(), strict=True))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Assertions):
            return self._columns() == other._columns()
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Assertions n={len(self)}>"

    def to_list(self) -> list[dict[str, Any]]:
        """``[assertion.to_dict(), ...]``: JSON-friendly, no note text."""
        return [a.to_dict() for a in self]


class _NoteCues:
    """The cues of one note from a batch pass (:meth:`ConText._apply_many`), as columns, until
    someone asks for the :class:`Cue` objects (:attr:`Assertions.cues`). Holds the note's own
    cues only, so that a note kept from a batch keeps nothing of the other notes.

    ``fields``: the columns of the :class:`Cue` fields of the note's cues that hold; ``hit_ids``:
    the cue (index into ``fields``) of each (concept, cue) hit, in the concepts' order; concept
    ``i`` has the cues ``hit_ids[lo[i]:hi[i]]``, unless ``explicit`` holds its tuple.
    """

    __slots__ = ("fields", "hit_ids", "lo", "hi", "explicit")

    def __init__(
        self,
        fields: list[list],
        hit_ids: list[int],
        lo: list[int],
        hi: list[int],
        explicit: dict[int, tuple[Cue, ...]] | None,
    ) -> None:
        self.fields = fields
        self.hit_ids = hit_ids
        self.lo = lo
        self.hi = hi
        self.explicit = explicit

    def make(self) -> list[tuple[Cue, ...]]:
        """The cue tuple of each concept (one :class:`Cue` a cue, shared by its hits)."""
        made = list(map(_new, repeat(Cue), zip(*self.fields)))
        hits = list(map(made.__getitem__, self.hit_ids))
        out = list(map(tuple, map(hits.__getitem__, map(slice, self.lo, self.hi))))
        if self.explicit:
            for i, t in self.explicit.items():
                out[i] = t
        return out


# --------------------------------------------------------------------------------------------
# The matcher


_FORWARD, _BACKWARD, _BOTH, _PSEUDO, _TERMINATE = range(5)
_KIND = {d: k for k, d in enumerate(DIRECTIONS)}
_new = tuple.__new__  # builds a named tuple without the Python-level __new__ (hot loop)
# One bit a category, in the order of the Assertion flags.
_BIT = {cat: 1 << i for i, cat in enumerate(CATEGORIES)}
_NEG, _POS, _HIST, _FAM, _HYP = (_BIT[c] for c in CATEGORIES)


class _Compiled:
    """Everything ``ConText`` precomputes from its rules.

    A modifying rule becomes ``(kind, category, reach, stop_at_comma, by_tokens, label, bit)``.
    Each literal cue (normalized) and each pattern maps to ``(rules, stop mask)``: the
    modifying rules it fires (none for a pseudo cue, which still occupies its text) and the
    bits of the categories whose scopes it ends (those it terminates, and its own: the next
    cue of a category ends the scope of the previous one).
    """

    def __init__(self, rules: Sequence[ContextRule], normalizer: NormalizerConfig | None):
        literal: dict[str, tuple[tuple, int]] = {}
        pattern_parts: list[str] = []
        self.pattern_info: list[tuple[tuple, int]] = []
        for r in rules:
            kind = _KIND[r.direction]
            if kind == _TERMINATE:
                infos: tuple = ()
                mask = 0
                for cat in r.categories or CATEGORIES:
                    mask |= _BIT[cat]
            elif kind == _PSEUDO:
                infos, mask = (), 0
            else:
                bit = _BIT[r.category]  # type: ignore[index]
                label = r.cue if r.cue is not None else r.pattern
                infos = (
                    (
                        kind,
                        r.category,
                        r.scope,
                        r.stop_at_comma,
                        r.scope_unit == "tokens",
                        label,
                        bit,
                    ),
                )
                mask = bit
            if r.cue is not None:
                cue = normalize(r.cue, normalizer).text if normalizer else normalize(r.cue).text
                if not cue:
                    raise InputError(f"context rule {r.label} is empty after normalization")
                old_infos, old_mask = literal.get(cue, ((), 0))
                literal[cue] = (old_infos + infos, old_mask | mask)
            else:
                pattern_parts.append(f"(?P<r{len(self.pattern_info)}>{r.pattern})")
                self.pattern_info.append((infos, mask))
        self.literal = literal
        # leftmost-longest over the literal cues: one Aho-Corasick pass (Rust; the same matches
        # as a trie regex of the cues, at about twice its speed)
        self.literal_ac = None
        self.literal_info: list[tuple[tuple, int]] = []
        if literal:
            import ahocorasick_rs

            keys = list(literal)
            self.literal_info = [literal[k] for k in keys]
            self.literal_ac = ahocorasick_rs.AhoCorasick(
                keys, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest
            )
        self.patterns = None
        if pattern_parts:
            body = "|".join(pattern_parts)
            # A lookahead on the possible first characters lets ``re`` skip the text between
            # matches at C speed (patterns starting with a lookbehind otherwise defeat it).
            first = [_first_class(r.pattern) for r in rules if r.pattern is not None]
            if all(first):
                body = f"(?=[{''.join(first)}])(?:{body})"  # type: ignore[arg-type]
            self.patterns = re.compile(body)
        self._batch: _BatchTables | None = None

    @property
    def batch(self) -> _BatchTables:
        """The tables of :meth:`ConText._apply_many` (built on first use)."""
        if self._batch is None:
            self._batch = _BatchTables(self)
        return self._batch


class _Batch(NamedTuple):
    """The notes of one :meth:`ConText._apply_many` call laid end to end: the normalized texts
    joined (``joined``), each note's start there (``nb``) and in the original texts joined the
    same way (``ob``), and the concepts in those original offsets (numpy arrays)."""

    norms: Sequence[Normalized]
    sections: Sequence[Any]
    joined: str
    nb: Any
    ob: Any
    n_len: Any
    o_len: Any
    counts: list[int]
    all_s: list[int]
    all_e: list[int]
    c_start: Any
    c_end: Any
    c_stop: Any
    longest: Any
    c_note: Any  # the note of each concept
    first_c: Any  # each note's first concept


#: Joins the normalized notes of a batch (normalize() removes control characters).
_BATCH_SEP = "\x05"


class _BatchTables:
    """What :meth:`ConText._apply_many` looks up with numpy: one row per "info" (a literal cue,
    then a pattern) with its stop mask and its modifying rules, which are numbered in one flat
    table (``kind``, reach in characters without tokens, ``stop_at_comma``, bit, category,
    label, direction name)."""

    def __init__(self, comp: _Compiled) -> None:
        import numpy as np

        infos = comp.literal_info + comp.pattern_info
        self.n_literal = len(comp.literal_info)
        rules = [r for rs, _ in infos for r in rs]
        self.mask = np.array([m for _, m in infos] or [0], dtype=np.int64)
        self.n_rules = np.array([len(rs) for rs, _ in infos] or [0], dtype=np.int64)
        self.first = np.cumsum(self.n_rules) - self.n_rules
        self.multi = bool(len(infos)) and int(self.n_rules.max()) > 1
        self.kind = np.array([r[0] for r in rules] or [0], dtype=np.int64)
        self.chars = np.array(
            [r[2] * CHARS_PER_TOKEN if r[4] else r[2] for r in rules] or [0], dtype=np.int64
        )
        self.stop_comma = np.array([r[3] for r in rules] or [True], dtype=bool)
        self.bit = np.array([r[6] for r in rules] or [0], dtype=np.int64)
        self.category = [r[1] for r in rules]
        self.label = [r[5] for r in rules]
        self.direction = [DIRECTIONS[r[0]] for r in rules]
        # leftmost-longest over the UTF-16 code units of a whole batch (see ConceptMatcher)
        self.ac16 = None
        self.ac_str = comp.literal_ac
        keys = list(comp.literal)
        if keys and not any(_BATCH_SEP in k for k in keys):
            import ahocorasick_rs

            self.ac16 = ahocorasick_rs.BytesAhoCorasick(
                [k.encode("utf-16-le", "surrogatepass") for k in keys],
                matchkind=ahocorasick_rs.MatchKind.LeftmostLongest,
            )


class ConText:
    """Assigns negated / uncertain / historical / family / hypothetical to concept spans.

    Args:
        rules: :class:`ContextRule` objects or their dicts; ``None`` loads the shipped
            ``corpora/rules/context.json``.
        normalizer: the :class:`NormalizerConfig` applied before matching (default: ehrtext's).
        section_defaults: let section attributes (``history``, ``family``) set flags.

    Example:
        >>> ctx = ConText()
        >>> ctx.add_rule({"cue": "未提示", "category": "NEGATED_EXISTENCE", "direction": "forward"})
        >>> a = ctx.apply("超声未提示血栓形成", [(5, 7)])[0]
        >>> a.negated, [(c.start, c.end) for c in a.cues]
        (True, [(2, 5)])
    """

    def __init__(
        self,
        rules: Iterable[ContextRule | Mapping[str, Any]] | None = None,
        *,
        normalizer: NormalizerConfig | None = None,
        section_defaults: bool = True,
    ) -> None:
        self.normalizer = normalizer
        self.section_defaults = bool(section_defaults)
        self._rules: list[ContextRule] = []
        self._compiled: _Compiled | None = None
        for rule in _shipped_rules() if rules is None else rules:
            self.add_rule(rule)

    # -- rules -------------------------------------------------------------------------------
    @property
    def rules(self) -> tuple[ContextRule, ...]:
        """The rules, in the order they were added."""
        return tuple(self._rules)

    def add_rule(self, rule: ContextRule | Mapping[str, Any]) -> None:
        """Add a rule (or its dict)."""
        if isinstance(rule, Mapping):
            rule = ContextRule.from_dict(rule)
        elif not isinstance(rule, ContextRule):
            raise InputError(f"add_rule expects a ContextRule or dict, got {describe_type(rule)}")
        self._rules.append(rule)
        self._compiled = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"format": 1, "rules": [...]}``."""
        out: dict[str, Any] = {
            "format": CONTEXT_FORMAT,
            "rules": [r.to_dict() for r in self._rules],
        }
        if self.normalizer is not None:
            out["normalizer"] = self.normalizer.to_dict()
        if not self.section_defaults:
            out["section_defaults"] = False
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConText:
        """Inverse of :meth:`to_dict` (also reads ``corpora/rules/context.json``)."""
        if not isinstance(d, Mapping) or not isinstance(d.get("rules"), list):
            raise InputError("context rules must be an object with a 'rules' list")
        fmt = d.get("format", CONTEXT_FORMAT)
        if fmt != CONTEXT_FORMAT:
            raise InputError(
                f"context rules have format {fmt!r}; this ehrtext reads {CONTEXT_FORMAT}: "
                "upgrade ehrtext"
            )
        norm = d.get("normalizer")
        normalizer = NormalizerConfig.from_dict(norm) if norm is not None else None
        rules = []
        for i, r in enumerate(d["rules"]):
            try:
                rules.append(ContextRule.from_dict(r))
            except InputError as exc:
                raise InputError(f"context rule #{i}: {exc}") from None
        return cls(rules, normalizer=normalizer, section_defaults=d.get("section_defaults", True))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_compiled"] = None  # rebuilt on first use (the automaton does not pickle)
        return state

    def _get_compiled(self) -> _Compiled:
        if self._compiled is None:
            self._compiled = _Compiled(self._rules, self.normalizer)
        return self._compiled

    # -- cues --------------------------------------------------------------------------------
    def _normalize(self, text: str | Normalized) -> Normalized:
        if isinstance(text, Normalized):
            return text
        if not isinstance(text, str):
            raise TypeError(f"ConText expects str, got {describe_type(text)}")
        return normalize(text, self.normalizer) if self.normalizer else normalize(text)

    def find_cues(
        self,
        text: str | Normalized,
        sections: Sequence[Any] | None = None,
        tokens: Any = None,
    ) -> list[Cue]:
        """Every modifying cue of ``text`` with its scope (pseudo cues and terminators are
        used, not returned). Offsets into the text as given."""
        norm = self._normalize(text)
        return [_make_cue(c) for c in self._cues(norm, sections, tokens)]

    def _cues(self, norm: Normalized, sections, tokens, near=None) -> list[tuple]:
        """``(start, end, kind, bit, scope_start, scope_end, category, label)`` of each cue,
        in original offsets (plain tuples: :class:`Cue` objects are made only when needed).

        ``near`` = ``(sorted span starts, longest span)``: cues that cannot reach any of these
        spans are skipped (their scopes are not computed)."""
        comp = self._get_compiled()
        t = norm.text

        # 1. matches, leftmost-longest over literal cues and patterns (normalized offsets):
        #    (start, end, (modifying rules, stop mask))
        if comp.literal_ac is not None:
            info = comp.literal_info
            found = [(s, e, info[p]) for p, s, e in comp.literal_ac.find_matches_as_indexes(t)]
        else:
            found = []
        if comp.patterns is not None:
            pinfo = comp.pattern_info
            extra = [
                (*m.span(), pinfo[int(m.lastgroup[1:])])  # type: ignore[index]
                for m in comp.patterns.finditer(t)
            ]
            if extra:  # longest first at one place; on a tie the (more specific) pattern
                found = extra + found
                found.sort(key=lambda x: (x[0], -x[1]))
                kept = []
                last_end = -1
                for item in found:
                    if item[0] >= last_end:
                        kept.append(item)
                        last_end = item[1]
                found = kept
        cue_at = [i for i, f in enumerate(found) if f[2][0]]
        if not cue_at:
            return []
        nf = len(found)
        f_starts = [f[0] for f in found]
        f_ends = [f[1] for f in found]
        f_masks = [f[2][1] for f in found]
        om = norm.offsets
        o_starts, o_ends = f_starts, f_ends
        if not om.is_identity:
            o_starts = om.starts_to_original(f_starts)
            o_ends = om.ends_to_original(f_ends)

        # 2. scopes in normalized offsets. A scope stops at the next match that ends its
        #    category (a few matches away at most); sentence and clause ends are searched in
        #    the scope's window only (far cheaper than listing every comma of the note).
        n = len(t)
        search = _BOUNDARY.search
        rsearch = _BOUNDARY_REV.search
        rt: str | None = None  # the reversed text, made at the first backward scope
        if near is not None:
            sp_starts, longest = near
            n_sp = len(sp_starts)
        by_tokens_any = False
        raw: list[tuple] = []  # (match index, rule, scope start, scope end), normalized
        for i in cue_at:
            cs, ce = f_starts[i], f_ends[i]
            for rule in found[i][2][0]:
                kind, _, reach, stop_comma, by_tokens, _, bit = rule
                chars = reach
                if by_tokens:
                    by_tokens_any = True
                    chars = n if tokens is not None else reach * CHARS_PER_TOKEN
                if near is not None:  # in original offsets, with room for normalization
                    j = bisect_left(sp_starts, o_starts[i] - chars - longest - 8)
                    if j == n_sp or sp_starts[j] > o_ends[i] + chars + 8:
                        continue  # no concept within reach
                scope_start, scope_end = cs, ce
                if kind != _BACKWARD:
                    hi = ce + chars if ce + chars < n else n
                    j = i + 1
                    while j < nf and f_starts[j] < hi:
                        if f_masks[j] & bit:
                            hi = f_starts[j]
                            break
                        j += 1
                    pos = ce
                    while pos < hi:
                        m = search(t, pos, hi)
                        if m is None:
                            break
                        if stop_comma or m.lastgroup == "s":
                            hi = m.start()
                            break
                        pos = m.end()
                    scope_end = hi
                if kind != _FORWARD:
                    lo = cs - chars if cs > chars else 0
                    j = i - 1
                    while j >= 0 and f_ends[j] > lo:
                        if f_masks[j] & bit:
                            lo = f_ends[j]
                            break
                        j -= 1
                    if lo < cs:
                        if rt is None:
                            rt = t[::-1]
                        pos, rhi = n - cs, n - lo
                        while pos < rhi:
                            m = rsearch(rt, pos, rhi)
                            if m is None:
                                break
                            if stop_comma or m.lastgroup == "s":
                                lo = n - m.start()
                                break
                            pos = m.end()
                    scope_start = lo if lo < cs else cs
                raw.append((i, rule, scope_start, scope_end))
        if not raw:
            return []

        # 3. to original offsets; section headers and token limits are original offsets
        s_starts = [r[2] for r in raw]
        s_ends = [r[3] for r in raw]
        if not om.is_identity:
            s_starts = om.starts_to_original(s_starts)
            s_ends = om.ends_to_original(s_ends)
        hs: list[int] = []
        he: list[int] = []
        if sections:
            for sec in sections:
                if sec.header_end > sec.header_start:
                    hs.append(sec.header_start)
                    he.append(sec.header_end)
            if hs and any(hs[k] > hs[k + 1] for k in range(len(hs) - 1)):
                order = sorted(range(len(hs)), key=hs.__getitem__)
                hs = [hs[k] for k in order]
                he = [he[k] for k in order]
        tok_starts = tok_ends = None
        if by_tokens_any and tokens is not None:
            tok_starts, tok_ends = _token_bounds(tokens)
        out: list[tuple] = []
        for k, (i, (kind, cat, reach, _, by_tokens, label, bit), _, _) in enumerate(raw):
            cs, ce, ss, se = o_starts[i], o_ends[i], s_starts[k], s_ends[k]
            if hs:
                j = bisect_right(hs, cs) - 1
                if j >= 0 and ce <= he[j]:
                    continue  # a cue inside a header (既往史：, 家族史：) is no cue
                if j + 1 < len(hs) and hs[j + 1] < se:
                    se = hs[j + 1] if hs[j + 1] > ce else ce
                if j >= 0 and he[j] > ss:
                    ss = he[j] if he[j] < cs else cs
            if tok_starts is not None and by_tokens:
                if kind != _BACKWARD:
                    j = bisect_left(tok_starts, ce) + reach - 1
                    if 0 <= j < len(tok_ends) and tok_ends[j] < se:
                        se = tok_ends[j] if tok_ends[j] > ce else ce
                if kind != _FORWARD:
                    j = bisect_right(tok_ends, cs) - reach
                    if j >= 0 and tok_starts[j] > ss:
                        ss = tok_starts[j] if tok_starts[j] < cs else cs
            out.append((cs, ce, kind, bit, ss, se, cat, label))
        return out

    # -- assertions --------------------------------------------------------------------------
    def apply(
        self,
        text: str | Normalized,
        spans: Iterable[tuple[int, int] | Any],
        sections: Sequence[Any] | None = None,
        tokens: Any = None,
    ) -> list[Assertion]:
        """The assertion of each concept span, in the order given.

        Args:
            text: the note (or its :class:`Normalized`, to normalize once per pipeline).
            spans: ``(start, end)`` concept spans in offsets of the note as given (objects
                with ``.start``/``.end`` work too).
            sections: the note's :class:`~ehrtext.text.sections.Section` list (from
                :func:`~ehrtext.text.sections.split_sections` or
                :func:`~ehrtext.text.sections.sections_from_fields`): headers end scopes and
                ``history``/``family`` attributes give defaults.
            tokens: the note's tokens (:class:`~ehrtext.text.Tokens` or ``(start, end)``
                pairs), needed only by rules with ``scope_unit: tokens``.
        """
        norm = self._normalize(text)
        pairs = spans if isinstance(spans, list) else list(spans)
        if not pairs:
            return []
        checked = _int_pairs(pairs)  # fast path: (int, int) tuples, as ConceptMatcher gives
        if checked is None:
            checked = []
            for sp in pairs:
                try:
                    s, e = sp
                    if type(s) is not int or type(e) is not int or not 0 <= s <= e:
                        raise ValueError
                except (TypeError, ValueError):
                    s, e = _pair(sp)
                checked.append((s, e))
        # spans usually come sorted (a matcher's output): then no sort and no indirection
        if all([a <= b for a, b in zip(checked, checked[1:])]):
            return self._sweep(
                norm, [s for s, _ in checked], [e for _, e in checked], sections, tokens
            )
        order = sorted(range(len(checked)), key=checked.__getitem__)
        swept = self._sweep(
            norm, [checked[i][0] for i in order], [checked[i][1] for i in order], sections, tokens
        )
        results: list[Assertion] = [None] * len(checked)  # type: ignore[list-item]
        for i, a in zip(order, swept):
            results[i] = a
        return results

    __call__ = apply

    def _sweep(
        self,
        norm: Normalized,
        starts: list[int],
        ends: list[int],
        sections: Sequence[Any] | None,
        tokens: Any,
    ) -> list[Assertion]:
        """The assertions of spans given as columns sorted by ``(start, end)`` (validated: ints,
        ``0 <= start <= end``), in that order. :class:`~ehrtext.text.pipeline.TextPipeline`
        calls it with a :class:`~ehrtext.text.concepts.Concepts`' columns directly."""
        if not starts:
            return []
        longest = max(map(sub, ends, starts))
        cues = self._cues(norm, sections, tokens, (starts, longest))
        sec_list: list[Any] = []
        if sections and self.section_defaults:
            sec_list = sorted(
                (s for s in sections if s.attributes.get("history") or s.attributes.get("family")),
                key=lambda s: s.start,
            )
        sec_starts = [s.start for s in sec_list]
        # per section: its default bits and the Cue objects that report them
        sec_info = []
        for sec in sec_list:
            cats = [cat for attr, cat in _SECTION_DEFAULTS if sec.attributes.get(attr)]
            bits, made = _section_cues(sec, cats)
            sec_info.append((sec.end, bits, made))

        # the text a cue modifies, the cue included, sorted by start
        regions = sorted(
            (c[4], c[5] if c[5] > c[1] else c[1], c[0], c[1], c[2], c[3], k)
            for k, c in enumerate(cues)
        )
        n_regions = len(regions)
        made_cues: list[Cue | None] = [None] * len(cues)

        # sweep: spans by start; ``active`` holds the regions begun before the span's end
        # and not yet ended (usually one to three)
        results: list[Assertion] = []
        add = results.append
        active: list[tuple] = []
        min_end = 1 << 62  # the earliest end among the active regions
        sec_j, n_sec = -1, len(sec_info)  # the section holding the span (sections by start)
        nxt = 0
        for s, e in zip(starts, ends):
            stop = e if e > s else s + 1
            while nxt < n_regions and regions[nxt][0] < stop:
                r = regions[nxt]
                active.append(r)
                if r[1] < min_end:
                    min_end = r[1]
                nxt += 1
            if min_end <= s:
                active = [r for r in active if r[1] > s]
                min_end = min([r[1] for r in active], default=1 << 62)
            if not active and not sec_info:
                add(_new(Assertion, (s, e, False, False, False, False, False, ())))
                continue
            mask = 0
            hit: list[int] | None = None
            for r_start, _, cs, ce, kind, bit, k in active:
                if r_start >= stop or (s <= cs and ce <= e):
                    continue  # starts after a nested span, or the cue is part of the concept
                if (kind == _FORWARD and e <= cs) or (kind == _BACKWARD and s >= ce):
                    continue  # the span lies on the other side of a one-way cue
                mask |= bit
                if hit is None:
                    hit = [k]
                else:
                    hit.append(k)
            extra: list[Cue] = []
            if sec_info:
                while sec_j + 1 < n_sec and sec_starts[sec_j + 1] <= s:  # spans come sorted
                    sec_j += 1
                if sec_j >= 0 and s < sec_info[sec_j][0] and sec_info[sec_j][1] & ~mask:
                    for c in sec_info[sec_j][2]:
                        if _BIT[c.category] & ~mask:
                            extra.append(c)
                    mask |= sec_info[sec_j][1]
            if not mask:
                add(_new(Assertion, (s, e, False, False, False, False, False, ())))
                continue
            found: list[Cue] = []
            if hit is not None:
                for k in hit:
                    c = made_cues[k]
                    if c is None:
                        c = made_cues[k] = _make_cue(cues[k])
                    found.append(c)
            found.extend(extra)
            if mask & _FAM and mask & _HIST:  # a relative's condition is not the patient's past
                mask &= ~_HIST
                found = [c for c in found if c.category != "HISTORICAL"]
            add(
                _new(
                    Assertion,
                    (
                        s,
                        e,
                        bool(mask & _NEG),
                        bool(mask & _POS),
                        bool(mask & _HIST),
                        bool(mask & _FAM),
                        bool(mask & _HYP),
                        tuple(found),
                    ),
                )
            )
        return results

    def _apply_many(
        self,
        norms: Sequence[Normalized],
        columns: Sequence[tuple[list[int], list[int]]],
        sections: Sequence[Sequence[Any] | None],
        min_concepts: int = 256,
    ) -> list[Assertions]:
        """The assertions of a batch of notes, as one :class:`Assertions` a note: what
        ``[self._sweep(n, s, e, secs, None) if s else [] for …]`` gives (same offsets, flags
        and cues), with the per-cue and per-concept work done by numpy over the whole batch.

        ``columns[k]`` = the sorted, validated ``(starts, ends)`` of note ``k``'s concepts (a
        :class:`~ehrtext.text.concepts.Concepts`' columns); ``sections[k]`` its sections. A
        batch whose spans nest or overlap, or with fewer than ``min_concepts`` concepts (numpy
        costs ~0.3 ms a call: the sweep is faster on a note or two), takes the note-by-note
        sweep. :class:`TextPipeline` calls it once per batch.

        How: the notes are laid end to end (normalized texts joined by a separator, original
        offsets shifted the same way), so that nothing of one note can reach another: literal
        cues are found in one automaton pass over the batch (patterns note by note: they may
        look at a note's ends), scopes are cut at the next cue of their category with
        ``searchsorted``, sentence and clause ends come from one numpy classing of the batch's
        characters (the regex runs only where an enumerator may start, on the same window as
        note by note), and each cue's scope is matched to the range of concepts it covers with
        ``searchsorted`` too. Python runs per pattern match, per window that needs the regex
        and per concept that holds a cue, not per cue and concept.
        """
        import numpy as np

        nn = len(norms)
        counts = [len(c[0]) for c in columns]
        n_con = sum(counts)
        if not n_con:
            return [Assertions.from_list(()) for _ in range(nn)]
        if n_con < min_concepts:
            return self._sweep_each(norms, columns, sections)
        i64 = np.int64
        comp = self._get_compiled()
        tab = comp.batch
        texts = [n.text for n in norms]
        n_len = np.fromiter(map(len, texts), dtype=i64, count=nn)
        o_len = np.fromiter((len(n.original) for n in norms), dtype=i64, count=nn)
        nb = np.cumsum(n_len + 1) - (n_len + 1)  # where each normalized note starts
        ob = np.cumsum(o_len + 1) - (o_len + 1)  # where each original note starts
        cnt = np.array(counts, dtype=i64)
        c_note = np.repeat(np.arange(nn, dtype=i64), cnt)
        all_s = list(chain.from_iterable(c[0] for c in columns))
        all_e = list(chain.from_iterable(c[1] for c in columns))
        c_start = np.array(all_s, dtype=i64) + ob[c_note]
        c_end = np.array(all_e, dtype=i64) + ob[c_note]
        c_stop = np.where(c_end > c_start, c_end, c_start + 1)
        if n_con > 1 and (
            bool((c_start[1:] < c_start[:-1]).any()) or bool((c_stop[1:] < c_stop[:-1]).any())
        ):  # nested or overlapping spans: the sweep handles them
            return self._sweep_each(norms, columns, sections)
        first_c = np.cumsum(cnt) - cnt
        has_c = cnt > 0
        longest = np.zeros(nn, dtype=i64)
        longest[has_c] = np.maximum.reduceat(c_end - c_start, first_c[has_c])

        # 1. matches (start, end, info) in joined normalized offsets, sorted, non-overlapping
        joined = _BATCH_SEP.join(texts)
        size = len(joined)
        lit = _rows(np, [])
        if tab.ac16 is not None and joined.count(_BATCH_SEP) == nn - 1:
            enc = joined.encode("utf-16-le", "surrogatepass")
            if len(enc) == 2 * size:
                lit = _rows(np, tab.ac16.find_matches_as_indexes(enc))
                if (lit[:, 1] & 1).any():  # a match off a character boundary: redo on str
                    lit = _rows(np, tab.ac_str.find_matches_as_indexes(joined))
                else:
                    lit[:, 1:] >>= 1
            else:  # characters outside the BMP
                lit = _rows(np, tab.ac_str.find_matches_as_indexes(joined))
        elif tab.ac_str is not None:  # the separator occurs in a note or a cue
            parts = []
            for t, b in zip(texts, nb.tolist(), strict=True):
                rows = tab.ac_str.find_matches_as_indexes(t)
                if rows:
                    part = _rows(np, rows)
                    part[:, 1:] += b
                    parts.append(part)
            if parts:
                lit = np.concatenate(parts)
        m_s, m_e, m_x = lit[:, 1], lit[:, 2], lit[:, 0]
        if comp.patterns is not None:
            finditer = comp.patterns.finditer
            found: list[int] = []
            add = found.extend
            info0 = tab.n_literal - 1  # group r<q> is number q + 1
            for t, b in zip(texts, nb.tolist(), strict=True):
                for m in finditer(t):
                    s, e = m.span()
                    add((s + b, e + b, m.lastindex + info0))  # type: ignore[operator]
            if found:
                pat = np.array(found, dtype=i64).reshape(-1, 3)
                m_s, m_e, m_x = _merge(np, pat, m_s, m_e, m_x)
        m_mask = tab.mask[m_x]

        # 2. (match, rule) pairs: one a modifying rule of a match
        n_rules = tab.n_rules[m_x]
        pm = np.flatnonzero(n_rules)
        if tab.multi:
            k = n_rules[pm]
            pm = np.repeat(pm, k)
            pr = tab.first[m_x[pm]] + np.arange(len(pm)) - np.repeat(np.cumsum(k) - k, k)
        else:
            pr = tab.first[m_x[pm]]
        batch = _Batch(
            norms, sections, joined, nb, ob, n_len, o_len, counts, all_s, all_e,
            c_start, c_end, c_stop, longest, c_note, first_c,
        )  # fmt: skip
        cues = self._batch_scopes(np, tab, batch, m_s, m_e, m_mask, pm, pr) if len(pm) else None
        return self._batch_sweep(np, batch, cues)

    def _sweep_each(self, norms, columns, sections) -> list[Assertions]:
        """:meth:`_apply_many` note by note."""
        return [
            Assertions.from_list(self._sweep(n, s, e, secs, None) if s else ())
            for n, (s, e), secs in zip(norms, columns, sections, strict=True)
        ]

    def _batch_scopes(
        self, np: Any, tab: _BatchTables, batch: _Batch, m_s, m_e, m_mask, pm, pr
    ) -> tuple | None:
        """The cues of :meth:`_apply_many` (those the sweep keeps: near a concept, not in a
        header), as arrays in joined original offsets, in the order of :meth:`_cues`."""
        norms, sections, joined, nb, ob, n_len, o_len = batch[:7]
        c_start, longest = batch.c_start, batch.longest
        kind, chars, bit = tab.kind[pr], tab.chars[pr], tab.bit[pr]
        cs, ce = m_s[pm], m_e[pm]
        note = np.searchsorted(nb, cs, side="right") - 1
        # a scope stops at the next match that ends its category (nb: no match crosses notes)
        hi = np.minimum(ce + chars, nb[note] + n_len[note])
        lo = np.maximum(cs - chars, nb[note])
        for b in _BIT.values():
            sel = np.flatnonzero(bit == b)
            stops = np.flatnonzero(m_mask & b) if len(sel) else sel
            if not len(stops):
                continue
            at = pm[sel]
            j = np.searchsorted(stops, at, side="right")
            nxt = np.where(j < len(stops), m_s[stops[np.minimum(j, len(stops) - 1)]], hi[sel])
            hi[sel] = np.minimum(hi[sel], nxt)
            j = np.searchsorted(stops, at, side="left") - 1  # the last stop before the match
            prv = np.where(j >= 0, m_e[stops[np.maximum(j, 0)]], lo[sel])
            lo[sel] = np.maximum(lo[sel], prv)
        # sentence and clause ends: what a search of each scope's window gives (no window
        # crosses a note, and the patterns look behind no further than the cue)
        stop_comma = tab.stop_comma[pr]
        ends = _Boundaries(np, joined)
        fwd = (kind != _BACKWARD) & (ce < hi)
        se = np.where(kind != _BACKWARD, hi, ce)
        bwd = (kind != _FORWARD) & (lo < cs)
        ss = np.where(kind != _FORWARD, np.minimum(lo, cs), cs)
        for comma in (True, False):
            idx = np.flatnonzero(fwd & (stop_comma == comma))
            if len(idx):
                se[idx] = ends.forward(ce[idx], hi[idx], comma)
            idx = np.flatnonzero(bwd & (stop_comma == comma))
            if len(idx):
                ss[idx] = ends.backward(cs[idx], lo[idx], comma)
        # 3. to original offsets (ends: the original end of the last character)
        shift = (ob - nb)[note]
        o_cs, o_ce, o_ss, o_se = cs + shift, ce + shift, ss + shift, se + shift
        moved = [k for k, n in enumerate(norms) if not n.offsets.is_identity]
        if moved:  # notes that normalization changed: through their offset maps, in one pass
            is_moved = np.zeros(len(norms), dtype=bool)
            is_moved[moved] = True
            rows = np.flatnonzero(is_moved[note])
            if len(rows):
                # the original end of a span is that of its last character, plus one
                local = np.stack((cs, ss, ce - 1, se - 1))[:, rows] - nb[note[rows]]
                flat = local.T.ravel().tolist()
                sizes = 4 * np.bincount(note[rows], minlength=len(norms))[moved]
                mapped: list[int] = []
                pos = 0
                for k, w in zip(moved, sizes.tolist(), strict=True):
                    if w:
                        to_original = norms[k].offsets.starts_to_original
                        mapped.extend(to_original(flat[pos : pos + w], check=False))
                        pos += w
                got = np.array(mapped, dtype=np.int64).reshape(-1, 4) + ob[note[rows]][:, None]
                o_cs[rows], o_ss[rows] = got[:, 0], got[:, 1]
                o_ce[rows], o_se[rows] = got[:, 2] + 1, got[:, 3] + 1
        # 4. only cues with a concept within reach (as the sweep asks _cues), none in a header
        n_con = len(c_start)
        lb = np.maximum(o_cs - chars - longest[note] - 8, ob[note])
        ub = np.minimum(o_ce + chars + 8, ob[note] + o_len[note])
        j = np.searchsorted(c_start, lb, side="left")
        keep = (j < n_con) & (c_start[np.minimum(j, n_con - 1)] <= ub)
        hs: list[int] = []
        he: list[int] = []
        kept = note[keep]  # sorted: its distinct values are where it changes
        for k in kept[np.flatnonzero(np.diff(kept, prepend=-1))].tolist():
            secs = sections[k]
            if not secs:
                continue
            base = int(ob[k])
            a_, b_ = [], []
            for sec in secs:
                if sec.header_end > sec.header_start:
                    a_.append(sec.header_start + base)
                    b_.append(sec.header_end + base)
            if any(a_[i] > a_[i + 1] for i in range(len(a_) - 1)):
                order = sorted(range(len(a_)), key=a_.__getitem__)
                a_ = [a_[i] for i in order]
                b_ = [b_[i] for i in order]
            hs.extend(a_)
            he.extend(b_)
        if hs:
            h_s = np.array(hs, dtype=np.int64)
            h_e = np.array(he, dtype=np.int64)
            j = np.searchsorted(h_s, o_cs, side="right") - 1
            jj = np.maximum(j, 0)
            keep &= ~((j >= 0) & (o_ce <= h_e[jj]))  # a cue inside a header is no cue
            nxt = h_s[np.minimum(j + 1, len(h_s) - 1)]
            cut = (j + 1 < len(h_s)) & (nxt < o_se)
            o_se = np.where(cut, np.maximum(nxt, o_ce), o_se)
            cut = (j >= 0) & (h_e[jj] > o_ss)
            o_ss = np.where(cut, np.minimum(h_e[jj], o_cs), o_ss)
        if not keep.any():
            return None
        return (
            o_cs[keep],
            o_ce[keep],
            kind[keep],
            bit[keep],
            o_ss[keep],
            o_se[keep],
            pr[keep],
            note[keep],
        )

    def _batch_sweep(self, np: Any, batch: _Batch, cues: tuple | None) -> list[Assertions]:
        """The assertions of :meth:`_apply_many` from its cues."""
        sections, ob, counts, all_s, all_e = (
            batch.sections, batch.ob, batch.counts, batch.all_s, batch.all_e
        )  # fmt: skip
        c_start, c_end, c_stop = batch.c_start, batch.c_end, batch.c_stop
        n_con = len(c_start)
        i64 = np.int64
        hit_mask = np.zeros(n_con, dtype=i64)
        n_hit = np.zeros(n_con, dtype=i64)
        nn = len(counts)
        c_note, first_c = batch.c_note, batch.first_c
        fields: list[list] = [[] for _ in Cue._fields]
        hit_ids: list[int] = []
        cue_bounds = [0] * (nn + 1)  # note k's cues: fields[…][cue_bounds[k]:cue_bounds[k + 1]]
        if cues is not None:
            cs, ce, kind, bit, ss, se, rule, note = cues
            tab = self._get_compiled().batch
            nc = len(cs)
            r_start, r_end = ss, np.maximum(se, ce)  # the text a cue modifies, itself included
            # the concepts a region meets: stop > r_start and start < r_end (both sorted)
            lo = np.searchsorted(c_stop, r_start, side="right")
            k = np.maximum(np.searchsorted(c_start, r_end, side="left") - lo, 0)
            pc = np.repeat(np.arange(nc, dtype=i64), k)
            pi = np.arange(len(pc), dtype=i64) - np.repeat(np.cumsum(k) - k - lo, k)
            s, e, a, b, kd = c_start[pi], c_end[pi], cs[pc], ce[pc], kind[pc]
            ok = ~((s <= a) & (b <= e))  # the cue is part of the concept
            ok &= ~((kd == _FORWARD) & (e <= a)) & ~((kd == _BACKWARD) & (s >= b))
            pc, pi = pc[ok], pi[ok]
            if len(pc):
                # each concept's cues in the order of the regions (start, end, cue, …, index)
                rank = np.empty(nc, dtype=i64)
                rank[np.lexsort((np.arange(nc), bit, kind, ce, cs, r_end, r_start))] = np.arange(nc)
                order = np.lexsort((rank[pc], pi))
                pc, pi = pc[order], pi[order]
                np.bitwise_or.at(hit_mask, pi, bit[pc])
                n_hit = np.bincount(pi, minlength=n_con)
                # the fields of the cues that hold somewhere (Cue objects made when asked),
                # note by note; a hit's cue as an index among its note's cues
                hold = np.zeros(nc, dtype=bool)
                hold[pc] = True
                used = np.flatnonzero(hold)
                used = used[np.argsort(note[used], kind="stable")]  # grouped by note
                u_note = note[used]
                where = np.empty(nc, dtype=i64)
                where[used] = np.arange(len(used), dtype=i64)
                first_cue = np.searchsorted(u_note, np.arange(nn + 1, dtype=i64))
                cue_bounds = first_cue.tolist()
                pc = where[pc] - first_cue[u_note[where[pc]]]
                shift = ob[u_note]
                rl = rule[used].tolist()
                fields = [
                    (cs[used] - shift).tolist(),
                    (ce[used] - shift).tolist(),
                    list(map(tab.category.__getitem__, rl)),
                    list(map(tab.direction.__getitem__, rl)),
                    (ss[used] - shift).tolist(),
                    (se[used] - shift).tolist(),
                    list(map(tab.label.__getitem__, rl)),
                ]
                hit_ids = pc.tolist()
        # section defaults: the last history/family section starting at or before the concept
        sec_bits = None
        sec_cues: list[tuple[Cue, ...]] = []
        if self.section_defaults:
            starts: list[int] = []
            ends: list[int] = []
            bits_l: list[int] = []
            # the default categories of each attributes mapping, looked up once (by id: the
            # mapping is kept in the value, so that the id stays its own while this runs)
            cats_of: dict[int, tuple[Any, tuple[str, ...]]] = {}
            ob_l = ob.tolist()
            for k, secs in enumerate(sections):
                if not secs or not counts[k]:
                    continue
                chosen = []
                for sec in secs:
                    attrs = sec.attributes
                    got = cats_of.get(id(attrs))
                    if got is None:
                        cats = tuple(cat for attr, cat in _SECTION_DEFAULTS if attrs.get(attr))
                        got = cats_of[id(attrs)] = (attrs, cats)
                    if got[1]:
                        chosen.append((sec, got[1]))
                if not chosen:
                    continue
                if len(chosen) > 1:
                    chosen.sort(key=_first_start)  # stable, as the sweep's sorted()
                base = ob_l[k]
                for sec, cats in chosen:
                    bits, made_s = _section_cues(sec, cats)
                    starts.append(sec.start + base)
                    ends.append(sec.end + base)
                    bits_l.append(bits)
                    sec_cues.append(tuple(made_s))
            if starts:
                st = np.array(starts, dtype=i64)
                j = np.searchsorted(st, c_start, side="right") - 1
                jj = np.maximum(j, 0)
                inside = (j >= 0) & (c_start < np.array(ends, dtype=i64)[jj])
                sec_bits = np.where(inside, np.array(bits_l, dtype=i64)[jj], 0)
                sec_j = jj
        if sec_bits is None:
            final = hit_mask
            extra = np.zeros(n_con, dtype=bool)
        else:
            final = hit_mask | sec_bits
            extra = (sec_bits & ~hit_mask) != 0
        # a relative's condition is not the patient's past
        both = ((final & _FAM) != 0) & ((final & _HIST) != 0)
        # the cues of each concept: the cues that hold alone are hits lo:hi of its note,
        # turned into tuples only when asked (Assertions.cues); a section's defaults alone are
        # its tuple; the few others (defaults merged in, historical dropped) made here
        ends_h = np.cumsum(n_hit)
        starts_h = ends_h - n_hit
        hit_base = np.append(starts_h, ends_h[-1:])[first_c]  # each note's first hit
        simple = (final != 0) & ~extra & ~both
        base = hit_base[c_note]
        lo_l = (starts_h - base).tolist()
        hi_l = (np.where(simple, ends_h, starts_h) - base).tolist()
        explicit: dict[int, tuple[Cue, ...]] = {}
        rest = both
        if sec_bits is not None:
            only_sec = np.flatnonzero(extra & ~both & (n_hit == 0))
            explicit.update(
                zip(only_sec.tolist(), map(sec_cues.__getitem__, sec_j[only_sec].tolist()))
            )
            rest = both | (extra & (n_hit > 0))
        for i in np.flatnonzero(rest).tolist():
            k = int(c_note[i])
            at = cue_bounds[k]
            found = [
                _new(Cue, [col[at + j] for col in fields]) for j in hit_ids[starts_h[i] : ends_h[i]]
            ]
            if extra[i]:
                mask = int(hit_mask[i])
                found.extend(c for c in sec_cues[sec_j[i]] if _BIT[c.category] & ~mask)
            if both[i]:
                found = [c for c in found if c.category != "HISTORICAL"]
            explicit[i] = tuple(found)
        by_note: dict[int, dict[int, tuple[Cue, ...]]] = {}
        first_l = first_c.tolist()
        for g, t in explicit.items():
            k = int(c_note[g])
            by_note.setdefault(k, {})[g - first_l[k]] = t
        final = np.where(both, final & ~_HIST, final)
        flags = [((final & b) != 0).tolist() for b in (_NEG, _POS, _HIST, _FAM, _HYP)]
        columns = (all_s, all_e, *flags)
        hits_at = hit_base.tolist() + [len(hit_ids)]
        out: list[Assertions] = []
        pos = 0
        for k, c in enumerate(counts):
            end = pos + c
            xs = Assertions(*[col[pos:end] for col in columns], None)  # type: ignore[arg-type]
            if c:
                a, b = cue_bounds[k], cue_bounds[k + 1]
                xs._plan = _NoteCues(
                    [col[a:b] for col in fields],
                    hit_ids[hits_at[k] : hits_at[k + 1]],
                    lo_l[pos:end],
                    hi_l[pos:end],
                    by_note.get(k),
                )
            else:
                xs._cues = []
            out.append(xs)
            pos = end
        return out

    def __repr__(self) -> str:
        return f"<ConText rules={len(self._rules)}>"


@lru_cache(maxsize=1)
def _boundary_classes() -> Any:
    """For each BMP character, its class for _BOUNDARY (bits 0-1) and for _BOUNDARY_REV (bits
    2-3): 0 (starts no match), 1 (comma or colon: a "c" match), 2 (sentence end: an "s"
    match) or 3 (may start an "s" match: ask the regex)."""
    import numpy as np

    every = "".join(map(chr, range(1 << 16)))
    lut = np.zeros(1 << 16, dtype=np.uint8)
    for shift, first in ((0, _FIRST_CLASS), (2, _FIRST_CLASS_REV)):
        cls = np.zeros(1 << 16, dtype=np.uint8)
        for value, pattern in ((3, first), (2, _STOP_CLASS), (1, _COMMA_CLASS)):
            cls[[m.start() for m in re.finditer(pattern, every)]] = value
        lut |= cls << shift
    return lut


class _Boundaries:
    """The first sentence or clause end of many scope windows of one text, as
    ``_BOUNDARY.search`` (``_BOUNDARY_REV.search`` on the reversed text) finds it: the
    candidate characters are classed once with numpy; a window whose first candidate is a
    comma or a sentence mark ends there, and only the others (an enumerator may start there)
    are searched with the regex, from that candidate on."""

    def __init__(self, np: Any, text: str) -> None:
        self.np = np
        self.text = text
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        # beyond the BMP: clipped to U+FFFF, which starts no match either
        self.classes = np.take(_boundary_classes(), codes, mode="clip")
        self._rev: str | None = None
        self._cands: dict[tuple[bool, bool], tuple[Any, Any]] = {}

    def _candidates(self, backward: bool, comma: bool) -> tuple[Any, Any]:
        key = (backward, comma)
        got = self._cands.get(key)
        if got is None:
            np = self.np
            cls = (self.classes >> 2) if backward else (self.classes & 3)
            pos = np.flatnonzero(cls >= (1 if comma else 2))
            got = self._cands[key] = (pos, cls[pos])
        return got

    def forward(self, starts: Any, stops: Any, comma: bool) -> Any:
        """For each window ``[start, stop)``: where the first boundary starts (a sentence end
        only when not ``comma``), else ``stop``."""
        np = self.np
        pos, cls = self._candidates(False, comma)
        out = stops.copy()
        if not len(pos):
            return out
        j = np.searchsorted(pos, starts, side="left")
        ok = j < len(pos)
        j = np.minimum(j, len(pos) - 1)
        p, c = pos[j], cls[j]
        inside = ok & (p < stops)
        sure = inside & (c != 3)
        out[sure] = p[sure]
        ask = np.flatnonzero(inside & (c == 3))
        if len(ask):
            search = (_BOUNDARY if comma else _SENTENCE).search
            text = self.text
            out[ask] = [
                m.start() if (m := search(text, x, y)) is not None else y
                for x, y in zip(p[ask].tolist(), stops[ask].tolist(), strict=True)
            ]
        return out

    def backward(self, ends: Any, starts: Any, comma: bool) -> Any:
        """For each window ``[start, end)`` searched backward: the position right after the
        last boundary (a sentence end only when not ``comma``), else ``start``."""
        np = self.np
        pos, cls = self._candidates(True, comma)
        out = starts.copy()
        if not len(pos):
            return out
        j = np.searchsorted(pos, ends, side="left") - 1
        ok = j >= 0
        j = np.maximum(j, 0)
        p, c = pos[j], cls[j]
        inside = ok & (p >= starts)
        sure = inside & (c != 3)
        out[sure] = p[sure] + 1
        ask = np.flatnonzero(inside & (c == 3))
        if len(ask):
            if self._rev is None:
                self._rev = self.text[::-1]
            rev, size = self._rev, len(self.text)
            search = (_BOUNDARY_REV if comma else _SENTENCE_REV).search
            out[ask] = [
                size - m.start() if (m := search(rev, size - 1 - x, size - y)) is not None else y
                for x, y in zip(p[ask].tolist(), starts[ask].tolist(), strict=True)
            ]
        return out


def _section_cues(sec: Any, cats: Sequence[str]) -> tuple[int, list[Cue]]:
    """The flag bits and the ``section`` cues that a historical / family section gives the
    concepts inside it, one cue per category."""
    bits, made = 0, []
    for cat in cats:
        bits |= _BIT[cat]
        made.append(
            Cue(sec.header_start, sec.header_end, cat, "section", sec.start, sec.end, sec.name)
        )
    return bits, made


def _first_start(pair: tuple) -> int:
    return pair[0].start


def _rows(np: Any, rows: list) -> Any:
    """``(a, b, c)`` triples (an automaton's matches) as an int64 array of shape ``(n, 3)``."""
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=3 * len(rows))
    return flat.reshape(-1, 3)


def _merge(np: Any, pat: Any, s: Any, e: Any, x: Any) -> tuple[Any, Any, Any]:
    """Pattern matches (rows ``start, end, info``) merged into the literal ones (columns): the
    longest first at one place, a pattern before a literal cue on a tie, and a match that
    overlaps one kept before it dropped -- what :meth:`ConText._cues` keeps, note by note.

    Literal matches do not overlap one another, nor do pattern matches; only matches that
    overlap another one go through the Python loop (the others are kept whatever it does)."""
    starts = np.concatenate((pat[:, 0], s))
    ends = np.concatenate((pat[:, 1], e))
    infos = np.concatenate((pat[:, 2], x))
    literal = np.concatenate((np.zeros(len(pat), dtype=bool), np.ones(len(s), dtype=bool)))
    order = np.lexsort((literal, -ends, starts))
    starts, ends, infos = starts[order], ends[order], infos[order]
    clash = np.zeros(len(starts), dtype=bool)
    clash[1:] = starts[1:] < np.maximum.accumulate(ends)[:-1]
    clash[:-1] |= ends[:-1] > starts[1:]
    if clash.any():
        idx = np.flatnonzero(clash)
        keep = ~clash
        last = -1
        for i, a, b in zip(idx.tolist(), starts[idx].tolist(), ends[idx].tolist(), strict=True):
            if a >= last:
                keep[i] = True
                last = b
        starts, ends, infos = starts[keep], ends[keep], infos[keep]
    return starts, ends, infos


def _int_pairs(pairs: list) -> list[tuple[int, int]] | None:
    """``pairs`` itself when it holds only ``(start, end)`` tuples of ints with
    ``0 <= start <= end`` (checked at C speed), else ``None``."""
    try:
        if all([type(p) is tuple and len(p) == 2 for p in pairs]) and all(
            [type(s) is int and type(e) is int and 0 <= s <= e for s, e in pairs]
        ):
            return pairs
    except TypeError:
        pass
    return None


def _pair(span: Any) -> tuple[int, int]:
    try:
        if isinstance(span, tuple | list):
            s, e = span
        else:
            s, e = span.start, span.end
        s, e = int(s), int(e)
    except (TypeError, ValueError, AttributeError):
        raise InputError(
            f"a concept span must be (start, end) or have .start/.end, got {describe_type(span)}"
        ) from None
    if not 0 <= s <= e:
        raise InputError(f"concept span ({s}, {e}) is not a valid span")
    return s, e


def _make_cue(c: tuple) -> Cue:
    cs, ce, kind, _, ss, se, cat, label = c
    return _new(Cue, (cs, ce, cat, DIRECTIONS[kind], ss, se, label))


def _first_class(pattern: str) -> str | None:
    """The characters a match of ``pattern`` may start with, as the inside of a regex class
    (``None`` when unknown: an optional start, a negated class …). Zero-width assertions at
    the start are skipped."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
        from re._constants import (  # type: ignore[import-not-found]
            ASSERT,
            ASSERT_NOT,
            AT,
            BRANCH,
            CATEGORY,
            IN,
            LITERAL,
            MAX_REPEAT,
            MIN_REPEAT,
            RANGE,
            SUBPATTERN,
        )
    except ImportError:  # pragma: no cover - other Pythons
        return None
    cats = {
        "CATEGORY_DIGIT": r"\d",
        "CATEGORY_SPACE": r"\s",
        "CATEGORY_WORD": r"\w",
    }

    def item(op, av) -> str | None:
        if op is LITERAL:
            return re.escape(chr(av))
        if op is RANGE:
            return f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}"
        if op is CATEGORY:
            return cats.get(str(av))
        return None

    zero = ""  # a sequence of zero-width items only

    def first(seq) -> str | None:
        for op, av in seq:
            if op in (ASSERT, ASSERT_NOT, AT):
                continue  # zero width
            if op is LITERAL:
                return re.escape(chr(av))
            if op is IN:
                parts = [item(o, a) for o, a in av]
                return None if None in parts else "".join(parts)  # type: ignore[arg-type]
            if op is SUBPATTERN:
                got = first(av[-1])
                if got == zero:
                    continue
                return got
            if op is BRANCH:
                parts = [first(b) for b in av[1]]
                if all(p == zero for p in parts):
                    continue
                if any(p is None or p == zero for p in parts):
                    return None
                return "".join(parts)  # type: ignore[arg-type]
            if op in (MAX_REPEAT, MIN_REPEAT) and av[0] >= 1:
                got = first(av[2])
                return None if got == zero else got
            return None
        return zero

    try:
        return first(sre_parse.parse(pattern)) or None
    except Exception:  # pragma: no cover - a parser change: fall back to no prefix
        return None


def _inside(s: int, e: int, starts: list[int], ends: list[int]) -> bool:
    j = bisect_right(starts, s) - 1
    return j >= 0 and e <= ends[j]


def _token_bounds(tokens: Any) -> tuple[list[int], list[int]]:
    starts = getattr(tokens, "starts", None)
    ends = getattr(tokens, "ends", None)
    if starts is not None and ends is not None:
        return list(starts), list(ends)
    pairs = [_pair(t) for t in tokens]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@lru_cache(maxsize=1)
def _shipped_rules() -> tuple[ContextRule, ...]:
    data = load_json("rules", "context.json")
    try:
        return ConText.from_dict(data).rules
    except InputError as exc:
        raise ResourceError(f"corpora/rules/context.json is malformed: {exc}") from None
