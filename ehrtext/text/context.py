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

Matching runs on the normalized text (:func:`ehrtext.text.normalize`); spans, cues and
scopes are all offsets into the text AS GIVEN.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from ehrtext.errors import InputError, ResourceError, describe_type
from ehrtext.resources import load_json
from ehrtext.text.normalize import Normalized, NormalizerConfig, normalize

__all__ = [
    "CATEGORIES",
    "Assertion",
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
_SENTENCE_END = re.compile(
    r"[。;!?；！？\n]|(?<![\d.])\d{1,2}[.、)](?![\d%])|[①-⑳]|\(\d{1,2}\)|[一二三四五六七八九十]{1,2}、"
)
_CLAUSE_END = re.compile(r"[,:，：]")


def _alternation(words: Iterable[str]) -> str:
    """A regex for any of ``words``, factored as a trie (longer words win over prefixes)."""
    trie: dict = {}
    for word in set(words):
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = True

    def emit(node: dict) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


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
            raise InputError(
                f"context rule {label}: category must be one of {sorted(CATEGORIES)}"
            )
        if self.max_scope is not None and (
            not isinstance(self.max_scope, int) or isinstance(self.max_scope, bool)
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
            "cue", "pattern", "category", "direction", "max_scope", "scope_unit",
            "stop_at_comma", "categories", "comment",
        }
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise InputError(f"context rule {d.get('cue', d.get('pattern'))!r}: unknown key(s) {unknown}")
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


@dataclass(frozen=True)
class Assertion:
    """The assertion status of one concept span (offsets into the note as given).

    ``cues`` holds the cues that set the flags (section defaults included).

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


# --------------------------------------------------------------------------------------------
# The matcher


class _Compiled:
    """Everything ``ConText`` precomputes from its rules."""

    def __init__(self, rules: Sequence[ContextRule], normalizer: NormalizerConfig | None):
        self.literal_rules: dict[str, list[int]] = {}
        pattern_parts: list[str] = []
        self.pattern_rules: list[int] = []
        for i, r in enumerate(rules):
            if r.cue is not None:
                cue = normalize(r.cue, normalizer).text if normalizer else normalize(r.cue).text
                if not cue:
                    raise InputError(f"context rule {r.label} is empty after normalization")
                self.literal_rules.setdefault(cue, []).append(i)
            else:
                pattern_parts.append(f"(?P<r{len(self.pattern_rules)}>{r.pattern})")
                self.pattern_rules.append(i)
        self.literal = re.compile(_alternation(self.literal_rules)) if self.literal_rules else None
        self.patterns = re.compile("|".join(pattern_parts)) if pattern_parts else None
        self.rules = list(rules)
        self.max_reach = max((r.scope for r in rules), default=0) * 4 + 16


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
        return self._cues(norm, sections, tokens)

    def _cues(self, norm: Normalized, sections, tokens) -> list[Cue]:
        comp = self._get_compiled()
        t = norm.text
        rules = comp.rules

        # 1. matches: (start, end, rule index list), leftmost-longest over literals and patterns
        found: list[tuple[int, int, list[int]]] = []
        if comp.literal is not None:
            lit = comp.literal_rules
            found.extend((m.start(), m.end(), lit[m.group()]) for m in comp.literal.finditer(t))
        if comp.patterns is not None:
            prules = comp.pattern_rules
            for m in comp.patterns.finditer(t):
                found.append((m.start(), m.end(), [prules[int(m.lastgroup[1:])]]))
            found.sort(key=lambda x: (x[0], -x[1]))
        if not found:
            return []
        kept = []
        last_end = -1
        for s, e, idx in found:
            if s >= last_end:
                kept.append((s, e, idx))
                last_end = e

        # 2. map everything to original offsets
        om = norm.offsets
        sent = [m.start() for m in _SENTENCE_END.finditer(t)]
        clause = [m.start() for m in _CLAUSE_END.finditer(t)]
        k_starts = om.starts_to_original([k[0] for k in kept])
        k_ends = om.ends_to_original([k[1] for k in kept])
        sent = om.starts_to_original(sent)
        # a boundary char at p: scopes end at p (forward) or start at p + 1 (backward)
        sent_after = [p + 1 for p in sent]
        clause = om.starts_to_original(clause)
        clause_after = [p + 1 for p in clause]
        if sections:
            header_starts, header_ends = [], []
            for sec in sections:
                if sec.header_end > sec.header_start:
                    header_starts.append(sec.header_start)
                    header_ends.append(sec.header_end)
            if header_starts:
                sent = sorted(sent + header_starts)
                sent_after = sorted(sent_after + header_ends)
        else:
            header_starts = header_ends = []

        # 3. cues and terminators by category
        cues: list[tuple[int, int, ContextRule]] = []
        term_all_s: list[int] = []
        term_all_e: list[int] = []
        term_cat: dict[str, tuple[list[int], list[int]]] = {}
        for (_, _, idx), cs, ce in zip(kept, k_starts, k_ends):
            if header_starts and _inside(cs, ce, header_starts, header_ends):
                continue
            for i in idx:
                r = rules[i]
                d = r.direction
                if d == "pseudo":
                    continue
                if d == "terminate":
                    if r.categories:
                        for c in r.categories:
                            ts, te = term_cat.setdefault(c, ([], []))
                            ts.append(cs)
                            te.append(ce)
                    else:
                        term_all_s.append(cs)
                        term_all_e.append(ce)
                else:
                    cues.append((cs, ce, r))
        if not cues:
            return []
        by_cat: dict[str, tuple[list[int], list[int]]] = {}
        for cs, ce, r in cues:
            lst = by_cat.setdefault(r.category, ([], []))
            lst[0].append(cs)
            lst[1].append(ce)
        stops_fwd: dict[str, list[int]] = {}
        stops_bwd: dict[str, list[int]] = {}
        for cat, (cst, cen) in by_cat.items():
            extra = term_cat.get(cat, ((), ()))
            stops_fwd[cat] = sorted([*term_all_s, *extra[0], *cst])
            stops_bwd[cat] = sorted([*term_all_e, *extra[1], *cen])

        tok_starts = tok_ends = None
        if tokens is not None:
            tok_starts, tok_ends = _token_bounds(tokens)
        n = len(norm.original)

        # 4. scopes
        out: list[Cue] = []
        for cs, ce, r in cues:
            d = r.direction
            cat = r.category
            reach = r.scope
            scope_start, scope_end = cs, ce
            if d != "backward":  # forward part
                limit = n
                j = bisect_left(sent, ce)
                if j < len(sent):
                    limit = sent[j]
                if r.stop_at_comma:
                    j = bisect_left(clause, ce)
                    if j < len(clause) and clause[j] < limit:
                        limit = clause[j]
                st = stops_fwd[cat]
                j = bisect_left(st, ce)
                if j < len(st) and st[j] < limit:
                    limit = st[j]
                if r.scope_unit == "tokens" and tok_starts is not None:
                    j = bisect_left(tok_starts, ce) + reach - 1
                    if j < len(tok_ends):
                        limit = min(limit, tok_ends[j])
                else:
                    chars = reach * CHARS_PER_TOKEN if r.scope_unit == "tokens" else reach
                    limit = min(limit, ce + chars)
                scope_end = max(limit, ce)
            if d != "forward":  # backward part
                limit = 0
                j = bisect_right(sent_after, cs) - 1
                if j >= 0:
                    limit = sent_after[j]
                if r.stop_at_comma:
                    j = bisect_right(clause_after, cs) - 1
                    if j >= 0 and clause_after[j] > limit:
                        limit = clause_after[j]
                st = stops_bwd[cat]
                j = bisect_right(st, cs) - 1
                if j >= 0 and st[j] > limit:
                    limit = st[j]
                if r.scope_unit == "tokens" and tok_starts is not None:
                    j = bisect_right(tok_ends, cs) - reach
                    if j >= 0:
                        limit = max(limit, tok_starts[j])
                else:
                    chars = reach * CHARS_PER_TOKEN if r.scope_unit == "tokens" else reach
                    limit = max(limit, cs - chars)
                scope_start = min(limit, cs)
            label = r.cue if r.cue is not None else r.pattern
            out.append(Cue(cs, ce, cat, d, scope_start, scope_end, label))
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
        pairs = [_pair(s) for s in spans]
        if not pairs:
            return []
        cues = self._cues(norm, sections, tokens)
        regions = sorted(
            ((c.scope_start, max(c.scope_end, c.end), c) for c in cues), key=lambda x: x[0]
        )
        region_starts = [r[0] for r in regions]
        reach = max((r[1] - r[0] for r in regions), default=0)

        sec_list = None
        if sections and self.section_defaults:
            sec_list = sorted(
                (s for s in sections if any(s.attributes.get(a) for a, _ in _SECTION_DEFAULTS)),
                key=lambda s: s.start,
            )
            sec_starts = [s.start for s in sec_list]

        out = []
        for s, e in pairs:
            hit: list[Cue] = []
            cats: set[str] = set()
            lo = bisect_left(region_starts, s - reach)
            hi = bisect_left(region_starts, max(e, s + 1))
            for rs, re_, c in regions[lo:hi]:
                if re_ <= s:
                    continue
                if s <= c.start and c.end <= e:
                    continue  # the cue is part of the concept (无痛性血尿)
                # the span must overlap the cue's side of the scope
                if c.direction == "forward" and e <= c.start:
                    continue
                if c.direction == "backward" and s >= c.end:
                    continue
                hit.append(c)
                cats.add(c.category)
            if sec_list:
                j = bisect_right(sec_starts, s) - 1
                if j >= 0 and s < sec_list[j].end:
                    sec = sec_list[j]
                    for attr, cat in _SECTION_DEFAULTS:
                        if sec.attributes.get(attr) and cat not in cats:
                            cats.add(cat)
                            hit.append(
                                Cue(
                                    sec.header_start, sec.header_end, cat, "section",
                                    sec.start, sec.end, sec.name,
                                )
                            )
            if "FAMILY" in cats and "HISTORICAL" in cats:
                cats.discard("HISTORICAL")
                hit = [c for c in hit if c.category != "HISTORICAL"]
            out.append(
                Assertion(
                    s,
                    e,
                    negated="NEGATED_EXISTENCE" in cats,
                    uncertain="POSSIBLE" in cats,
                    historical="HISTORICAL" in cats,
                    family="FAMILY" in cats,
                    hypothetical="HYPOTHETICAL" in cats,
                    cues=tuple(hit),
                )
            )
        return out

    __call__ = apply

    def __repr__(self) -> str:
        return f"<ConText rules={len(self._rules)}>"


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
