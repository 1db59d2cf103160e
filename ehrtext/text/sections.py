"""Section detection for Chinese EMR notes: 主诉, 现病史, 既往史, 家族史, 查体 … with attributes.

Rules are data (``corpora/rules/sections.json``): each :class:`SectionRule` has a canonical
snake_case ``name``, a Chinese ``title``, the header words that open it and attributes such as
``history`` (既往史), ``family`` (家族史) or ``admission_time``. :class:`Sectionizer` finds the
headers and cuts the note into :class:`Section` objects whose offsets point into the note AS
GIVEN (headers are matched on the normalized text, then mapped back).

What counts as a header. A header word opens a section only where a header can stand:

* at the start of a line or after a sentence end (``。；;！!？?``), possibly behind an
  enumerator (``一、`` ``(一)`` ``1.`` ``①``): ``既往史否认高血压`` on its own line;
* inside brackets: ``【主诉】`` ``[现病史]`` ``〖查体〗``;
* before a colon (full- or half-width): ``…3天。现病史：…`` or ``发热3天，既往史：…``.

So ``否认既往史中…`` or ``有高血压家族史`` never open a section, nor does a header word that
runs on into a sentence without colon (``查体发现…``, ``手术过程顺利``). Words that are common in
running text (``既往``, ``诊断``, ``化验``) are ``colon_variants``: they need a colon (and must
not stick to the Han character before them) or brackets.

Example:
    >>> from ehrtext.text.sections import split_sections
    >>> note = "主诉：发热3天。现病史：3天前受凉后发热。\\n【既往史】否认高血压病史。"
    >>> [(s.name, s.start, s.end, s.header_end) for s in split_sections(note)]
    [('chief_complaint', 0, 8, 3), ('present_illness', 8, 22, 12), ('past_history', 22, 35, 27)]

Structured records whose keys are section names (``{"主诉": …, "现病史": …}``) are turned into
one note with the same sections by :func:`sections_from_fields`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from ehrtext.errors import InputError, ResourceError, describe_type
from ehrtext.resources import load_json
from ehrtext.text.normalize import Normalized, NormalizerConfig, normalize

__all__ = [
    "PREAMBLE",
    "Section",
    "SectionRule",
    "Sectionizer",
    "default_sectionizer",
    "sections_from_fields",
    "split_sections",
]

#: Name of the section holding the text before the first header.
PREAMBLE = "preamble"
SECTIONS_FORMAT = 1

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
# Characters after which a header may start (besides the start of the text).
_BOUNDARY = frozenset("\n。;!?；！？")
_OPEN = frozenset("【[〖「")
_CLOSE = {"【": "】", "[": "]", "〖": "〗", "「": "」"}
_COLONS = frozenset(":：")
_SPACES = " \t"
# An enumerator right before a header word: 一、 二. (一) (1) 1. 1、 1) ① Ⅱ、
_ENUM_TAIL = re.compile(
    r"(?:[一二三四五六七八九十]{1,3}[、.]|\([一二三四五六七八九十\d]{1,2}\)"
    r"|\d{1,2}[、.)]|[①-⑳]|[ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫ]{1,3}[、.])[ \t]*\Z"
)
# The last character of an enumerator (a cheap test before the regex above).
_ENUM_LAST = frozenset("、.)" + "".join(chr(c) for c in range(0x2460, 0x2474)))
_HAN = re.compile(r"[\u3400-\u9fff]")
# A header word without colon or brackets that goes on like this is running text, not a
# header: 查体发现…, 手术过程顺利…, 查体示…
_RUNNING_TEXT = re.compile(r"发现|提示|示|见|时|中|后|顺利|过程")


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
# Data types


@dataclass(frozen=True)
class SectionRule:
    """One kind of section: canonical name, Chinese title, header words, attributes.

    ``variants`` open the section wherever a header may stand; ``colon_variants`` only before
    a colon or inside brackets (see the module docstring).

    Example:
        >>> rule = SectionRule("family_history", "家族史", ["家族史"], attributes={"family": True})
        >>> SectionRule.from_dict(rule.to_dict()) == rule
        True
    """

    name: str
    title: str
    variants: tuple[str, ...] = ()
    colon_variants: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InputError(
                f"section rule name must be snake_case ASCII (e.g. 'chief_complaint'), "
                f"got a {describe_type(self.name)} that is not"
            )
        if self.name == PREAMBLE:
            raise InputError(f"section rule name {PREAMBLE!r} is reserved")
        if not isinstance(self.title, str) or not self.title.strip():
            raise InputError(f"section rule {self.name!r}: 'title' must be a non-empty string")
        for key in ("variants", "colon_variants"):
            value = getattr(self, key)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise InputError(f"section rule {self.name!r}: {key!r} must be a list of strings")
            words = tuple(value)
            if not all(isinstance(w, str) and w.strip() for w in words):
                raise InputError(f"section rule {self.name!r}: {key!r} must hold non-empty strings")
            object.__setattr__(self, key, words)
        if not self.variants and not self.colon_variants:
            raise InputError(f"section rule {self.name!r} has no header words")
        if not isinstance(self.attributes, Mapping):
            raise InputError(f"section rule {self.name!r}: 'attributes' must be an object")
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SectionRule):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):  # picklable (the read-only attributes view is not)
        return (SectionRule.from_dict, (self.to_dict(),))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the format of ``corpora/rules/sections.json``)."""
        return {
            "name": self.name,
            "title": self.title,
            "variants": list(self.variants),
            "colon_variants": list(self.colon_variants),
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SectionRule:
        """Inverse of :meth:`to_dict`; unknown keys (other than ``_comment``) are an error."""
        if not isinstance(d, Mapping):
            raise InputError(f"a section rule must be an object, got {describe_type(d)}")
        known = {"name", "title", "variants", "colon_variants", "attributes"}
        unknown = sorted(str(k) for k in d if k not in known and not str(k).startswith("_"))
        if unknown:
            raise InputError(f"section rule {d.get('name')!r}: unknown key(s) {unknown}")
        if "name" not in d or "title" not in d:
            raise InputError("a section rule needs 'name' and 'title'")
        return cls(
            name=d["name"],
            title=d["title"],
            variants=d.get("variants", ()),
            colon_variants=d.get("colon_variants", ()),
            attributes=d.get("attributes", {}),
        )


@dataclass(frozen=True)
class Section:
    """One section of a note. Offsets index the note as given.

    ``start:end`` is the whole section (header included); ``header_start:header_end`` the
    header with its decoration (``【】``, ``一、``, the colon), so the body is
    ``text[header_end:end]``. The ``preamble`` has an empty header at ``start``.

    Example:
        >>> s = split_sections("家族史：父亲有高血压病史。")[0]
        >>> s.name, s.attributes["family"], s.body
        ('family_history', True, (4, 13))
    """

    name: str
    title: str
    start: int
    end: int
    header_start: int
    header_end: int
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __reduce__(self):  # picklable (the read-only attributes view is not)
        return (Section.from_dict, (self.to_dict(),))

    @property
    def body(self) -> tuple[int, int]:
        """``(header_end, end)``: the text of the section without its header."""
        return self.header_end, self.end

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (offsets, never text)."""
        return {
            "name": self.name,
            "title": self.title,
            "start": self.start,
            "end": self.end,
            "header_start": self.header_start,
            "header_end": self.header_end,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Section:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                str(d["name"]),
                str(d["title"]),
                int(d["start"]),
                int(d["end"]),
                int(d["header_start"]),
                int(d["header_end"]),
                MappingProxyType(dict(d.get("attributes", {}))),
            )
        except (KeyError, TypeError, ValueError):
            raise InputError("section dict is malformed") from None

    def __repr__(self) -> str:
        return (
            f"Section(name={self.name!r}, start={self.start}, end={self.end}, "
            f"header=({self.header_start}, {self.header_end}), "
            f"attributes={dict(self.attributes)!r})"
        )


_PREAMBLE_TITLE = ""
_EMPTY: Mapping[str, Any] = MappingProxyType({})


# --------------------------------------------------------------------------------------------
# The sectionizer


class Sectionizer:
    """Splits notes into sections with header rules (by default ``corpora/rules/sections.json``).

    Args:
        rules: :class:`SectionRule` objects or their dicts; ``None`` loads the shipped rules.
        normalizer: the :class:`NormalizerConfig` applied before matching (default: ehrtext's).

    Example:
        >>> sz = Sectionizer()
        >>> sz.add_rule({"name": "imaging", "title": "影像学检查", "variants": ["影像学检查"]})
        >>> [s.name for s in sz("主诉：胸痛。影像学检查：胸片未见异常。")]
        ['chief_complaint', 'imaging']
    """

    def __init__(
        self,
        rules: Iterable[SectionRule | Mapping[str, Any]] | None = None,
        *,
        normalizer: NormalizerConfig | None = None,
    ) -> None:
        self.normalizer = normalizer
        self._rules: list[SectionRule] = []
        self._compiled: tuple[re.Pattern, dict[str, tuple[SectionRule, bool]]] | None = None
        for rule in _shipped_rules() if rules is None else rules:
            self.add_rule(rule)

    # -- rules -------------------------------------------------------------------------------
    @property
    def rules(self) -> tuple[SectionRule, ...]:
        """The rules, in the order they were added."""
        return tuple(self._rules)

    def add_rule(self, rule: SectionRule | Mapping[str, Any]) -> None:
        """Add a rule (or its dict). A rule with the name of an existing one replaces it."""
        if isinstance(rule, Mapping):
            rule = SectionRule.from_dict(rule)
        elif not isinstance(rule, SectionRule):
            raise InputError(f"add_rule expects a SectionRule or dict, got {describe_type(rule)}")
        self._rules = [r for r in self._rules if r.name != rule.name] + [rule]
        self._compiled = None

    def rule(self, name: str) -> SectionRule:
        """The rule called ``name`` (``KeyError`` if there is none)."""
        for r in self._rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def lookup(self, header: str) -> SectionRule | None:
        """The rule whose title or header word is ``header`` (e.g. a record's field name)."""
        key = normalize(header).text.strip().rstrip(":").strip()
        if key.startswith("【") and key.endswith("】"):
            key = key[1:-1]
        entry = self._table()[1].get(key)
        if entry is not None:
            return entry[0]
        for r in self._rules:
            if r.title == key:
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"format": 1, "rules": [...]}``."""
        out: dict[str, Any] = {
            "format": SECTIONS_FORMAT,
            "rules": [r.to_dict() for r in self._rules],
        }
        if self.normalizer is not None:
            out["normalizer"] = self.normalizer.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sectionizer:
        """Inverse of :meth:`to_dict` (also reads ``corpora/rules/sections.json``)."""
        if not isinstance(d, Mapping) or not isinstance(d.get("rules"), list):
            raise InputError("section rules must be an object with a 'rules' list")
        fmt = d.get("format", SECTIONS_FORMAT)
        if fmt != SECTIONS_FORMAT:
            raise InputError(
                f"section rules have format {fmt!r}; this ehrtext reads {SECTIONS_FORMAT}: "
                "upgrade ehrtext"
            )
        norm = d.get("normalizer")
        normalizer = NormalizerConfig.from_dict(norm) if norm is not None else None
        rules = []
        for i, r in enumerate(d["rules"]):
            try:
                rules.append(SectionRule.from_dict(r))
            except InputError as exc:
                raise InputError(f"section rule #{i}: {exc}") from None
        return cls(rules, normalizer=normalizer)

    # -- matching ----------------------------------------------------------------------------
    def _table(self) -> tuple[re.Pattern, dict[str, tuple[SectionRule, bool]]]:
        compiled = self._compiled
        if compiled is None:
            words: dict[str, tuple[SectionRule, bool]] = {}
            # Colon variants first, so that a word listed both ways counts as a full variant;
            # later rules win over earlier ones for the same word.
            for strict in (True, False):
                for r in self._rules:
                    for w in r.colon_variants if strict else r.variants:
                        words[normalize(w).text] = (r, strict)
            compiled = (re.compile(_alternation(words)), words)
            self._compiled = compiled
        return compiled

    def _headers(self, t: str) -> list[tuple[int, int, SectionRule]]:
        """``(header_start, header_end, rule)`` of each accepted header in normalized text."""
        pattern, words = self._table()
        out = []
        n = len(t)
        for m in pattern.finditer(t):
            s, e = m.span()
            rule, strict = words[m.group()]
            # after the word: closing bracket, spaces, colon, spaces
            j = e
            close = j < n and t[j] in "】]〗」"
            if close:
                j += 1
            k = j
            while k < n and t[k] in _SPACES:
                k += 1
            colon = k < n and t[k] in _COLONS
            if colon:
                j = k + 1
                while j < n and t[j] in _SPACES:
                    j += 1
            else:
                j = k  # the spaces after a header belong to it
            # before the word: opening bracket, enumerator, spaces
            i = s
            opened = i > 0 and t[i - 1] in _OPEN
            if opened:
                i -= 1
            bracketed = opened and close and _CLOSE[t[i]] == t[e]
            h = i
            while h > 0 and t[h - 1] in _SPACES:
                h -= 1
            enum = None
            if h > 0 and t[h - 1] in _ENUM_LAST:
                enum = _ENUM_TAIL.search(t, max(0, i - 8), i)
            if enum is not None:
                i = enum.start()
            h = i
            while h > 0 and t[h - 1] in _SPACES:
                h -= 1
            at_boundary = h == 0 or t[h - 1] in _BOUNDARY
            if strict:
                glued = enum is None and not opened and s > 0 and _HAN.match(t[s - 1]) is not None
                ok = bracketed or (colon and (at_boundary or not glued))
            else:
                ok = bracketed or colon or (at_boundary and not _RUNNING_TEXT.match(t, e))
            if not ok:
                continue
            if not bracketed and not colon and close:
                j = e  # a stray closing bracket is not part of the header
                while j < n and t[j] in _SPACES:
                    j += 1
            out.append((i, j, rule))
        return out

    def __call__(self, text: str | Normalized) -> list[Section]:
        """The sections of ``text`` in order; see :func:`split_sections`.

        ``text`` may also be a :class:`Normalized` already computed by the caller (a pipeline
        normalizes each note once); offsets then point into its ``original``.
        """
        if isinstance(text, Normalized):
            norm = text
            text = norm.original
        elif isinstance(text, str):
            norm = normalize(text, self.normalizer) if self.normalizer else normalize(text)
        else:
            raise TypeError(f"Sectionizer expects str, got {describe_type(text)}")
        headers = self._headers(norm.text)
        n = len(text)
        if not headers:
            return [_section(PREAMBLE, _PREAMBLE_TITLE, 0, n, 0, 0, _EMPTY)] if text.strip() else []
        om = norm.offsets
        starts = om.starts_to_original([h[0] for h in headers])
        ends = om.ends_to_original([h[1] for h in headers])
        out: list[Section] = []
        if text[: starts[0]].strip():
            out.append(_section(PREAMBLE, _PREAMBLE_TITLE, 0, starts[0], 0, 0, _EMPTY))
        last = len(headers) - 1
        for k, (_, _, rule) in enumerate(headers):
            end = starts[k + 1] if k < last else n
            out.append(
                _section(rule.name, rule.title, starts[k], end, starts[k], ends[k], rule.attributes)
            )
        return out

    split = __call__

    def __repr__(self) -> str:
        return f"<Sectionizer rules={len(self._rules)}>"


def _section(
    name: str,
    title: str,
    start: int,
    end: int,
    header_start: int,
    header_end: int,
    attributes: Mapping[str, Any],
) -> Section:
    """``Section(...)`` without the frozen dataclass's ``__init__`` (one ``object.__setattr__``
    a field): the same object, built in a third of the time (a pipeline makes one for every
    section of every note)."""
    sec = _new_object(Section)
    sec.__dict__.update(
        name=name,
        title=title,
        start=start,
        end=end,
        header_start=header_start,
        header_end=header_end,
        attributes=attributes,
    )
    return sec


_new_object = object.__new__


@lru_cache(maxsize=1)
def _shipped_rules() -> tuple[SectionRule, ...]:
    data = load_json("rules", "sections.json")
    try:
        return Sectionizer.from_dict(data).rules
    except InputError as exc:
        raise ResourceError(f"corpora/rules/sections.json is malformed: {exc}") from None


_DEFAULT: list[Sectionizer] = []


def default_sectionizer() -> Sectionizer:
    """The shared :class:`Sectionizer` with the shipped rules (built once)."""
    if not _DEFAULT:
        _DEFAULT.append(Sectionizer())
    return _DEFAULT[0]


def split_sections(
    text: str | Normalized,
    rules: Sectionizer | Iterable[SectionRule | Mapping[str, Any]] | None = None,
) -> list[Section]:
    """Cut ``text`` into sections (offsets into ``text`` as given).

    ``rules`` is a :class:`Sectionizer`, a list of rules, or ``None`` for the shipped rules.
    Text before the first header becomes a ``preamble`` section (none when it is blank);
    a text without headers is one ``preamble`` (or ``[]`` when blank).

    Example:
        >>> [s.name for s in split_sections("患者男，65岁。\\n一、主诉 胸痛2小时\\n二、现病史 …")]
        ['preamble', 'chief_complaint', 'present_illness']
    """
    if rules is None:
        sz = default_sectionizer()
    elif isinstance(rules, Sectionizer):
        sz = rules
    else:
        sz = Sectionizer(rules)
    return sz(text)


def sections_from_fields(
    record: Mapping[str, Any],
    *,
    rules: Sectionizer | None = None,
    split_inner: bool = False,
    separator: str = "\n",
    colon: str = "：",
) -> tuple[str, list[Section]]:
    """Build one note from a record whose keys are section names, with its sections.

    Keys that name a section (``主诉``, ``现病史``, ``婚姻史``, ``入院情况`` …, looked up among
    the rules' titles and header words) become ``key：value`` blocks joined by ``separator``,
    in the record's order; other keys (ids, labels) and blank values are skipped. For each
    section ``text[s.header_end:s.end] == record[key]``. With ``split_inner`` the headers
    inside a field (``入院情况`` holding ``查体：…``) also open sections; the text before the
    first of them keeps the field's section (its body may be empty).

    Example:
        >>> record = {"病案标识": "X1", "主诉": "胸痛2小时", "家族史": "父亲有高血压"}
        >>> text, secs = sections_from_fields(record)
        >>> text
        '主诉：胸痛2小时\\n家族史：父亲有高血压'
        >>> [(s.name, s.header_end, s.end, dict(s.attributes).get("family")) for s in secs]
        [('chief_complaint', 3, 8, None), ('family_history', 13, 19, True)]
    """
    if not isinstance(record, Mapping):
        raise InputError(f"sections_from_fields expects a mapping, got {describe_type(record)}")
    sz = default_sectionizer() if rules is None else rules
    parts: list[str] = []
    sections: list[Section] = []
    pos = 0
    for key, value in record.items():
        if not isinstance(key, str) or not isinstance(value, str) or not value.strip():
            continue
        rule = sz.lookup(key)
        if rule is None:
            continue
        if parts:
            parts.append(separator)
            pos += len(separator)
        header = f"{key}{colon}"
        start, body = pos, pos + len(header)
        end = body + len(value)
        parts.append(header)
        parts.append(value)
        pos = end
        outer = Section(rule.name, rule.title, start, end, start, body, rule.attributes)
        inner = sz(value) if split_inner else []
        inner = [s for s in inner if s.name != PREAMBLE]
        if not inner:
            sections.append(outer)
            continue
        first = body + inner[0].start
        # the field's own section keeps the text before the first inner header (maybe blank)
        sections.append(Section(rule.name, rule.title, start, first, start, body, rule.attributes))
        for s in inner:
            sections.append(
                Section(
                    s.name,
                    s.title,
                    body + s.start,
                    body + s.end,
                    body + s.header_start,
                    body + s.header_end,
                    s.attributes,
                )
            )
    return "".join(parts), sections
