"""Text normalization for Chinese EHR notes, with an offset map back to the original text.

``normalize`` cleans a note (full-width ASCII, variant punctuation, whitespace variants,
zero-width and control characters, optional Traditional -> Simplified and lowercasing) and
returns a :class:`Normalized` whose :class:`OffsetMap` maps every span of the normalized text
back to the span of the original text it came from, so that entities found on the clean text
can be reported on the text as it was given.

Example:
    >>> from ehrtext.text.normalize import normalize
    >>> n = normalize("ＢＰ　１５０／９０ｍｍＨｇ")
    >>> n.text
    'BP 150/90mmHg'
    >>> n.to_original(3, 9)  # '150/90'
    (3, 9)
    >>> m = normalize("阿司匹林100㎎\u200b qd")
    >>> m.text, m.to_original(7, 9)  # 'mg' comes from the one char '㎎'
    ('阿司匹林100mg qd', (7, 8))

Design (speed matters: this runs on every note before tokenization):

1. One 1:1 character table (full-width, punctuation, whitespace variants, t2s, lowercase; all
   composed and closed so that applying it twice changes nothing) is applied with
   ``str.translate`` -- or, for long texts, the same table as a numpy lookup array over the
   UTF-32 code units, which is about 6x faster on CJK text than ``str.translate``. Positions do
   not move.
2. One compiled regex ``search`` (plus two O(1) edge checks for ``strip``) tells whether
   anything else is needed: a deletion, an expansion, ``\\r``, or a whitespace run to collapse.
   Most notes need nothing more and get the identity offset map.
3. Only then is the index built from the runs of untouched text: with numpy (``repeat`` +
   ``arange``) into an ``array('q')`` for long texts, else one ``list.extend`` of a slice of a
   shared list of position ints per run. Both are C-speed and create no int per char.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import Any, NamedTuple

from ehrtext.errors import InputError, ResourceError, describe_type
from ehrtext.resources import load_json

__all__ = ["Normalized", "NormalizerConfig", "OffsetMap", "normalize", "normalize_many"]

# --------------------------------------------------------------------------------------------
# Fixed character classes (not configurable: they are never wanted in a note).

#: Whitespace variants that become one ASCII space.
_SPACE_VARIANTS = (
    "\t\v\f\u00a0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u202f\u205f\u3000"
)
#: Line/paragraph separators that become '\n' (or ' ' when newlines are not kept).
_NEWLINE_VARIANTS = "\u2028\u2029"
#: Removed outright: zero-width chars, soft hyphen, C0 controls other than \t \n \v \f \r,
#: DEL and the C1 controls.
_DELETE = (
    "\u200b\u200c\u200d\u2060\ufeff\u00ad"
    + "".join(chr(c) for c in range(0x00, 0x09))
    + "".join(chr(c) for c in range(0x0E, 0x20))
    + "".join(chr(c) for c in range(0x7F, 0xA0))
)
_FULLWIDTH = {chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)}

#: Shared position ints 0..N-1 that short index lists are sliced from: slicing is ~10x faster
#: than ``range`` (no int objects are created). Grown on demand up to the cap (~2.6 MB).
_POSITIONS: list[int] = list(range(4096))
_POSITIONS_CAP = 1 << 16
#: Index lists at least this long are built with numpy into an ``array('q')`` (8 bytes a char,
#: ~2 ns a char, linear in the text length).
_NUMPY_INDEX_MIN = 4096


def _build_index(starts: list[int], lens: list[int]) -> list[int] | array[int]:
    """Per-char original positions from runs ``starts[k], starts[k] + 1, ...`` of ``lens[k]``."""
    total = sum(lens)
    if total >= _NUMPY_INDEX_MIN:
        np = _get_numpy()
        if np:
            st = np.array(starts, dtype=np.int64)
            ln = np.array(lens, dtype=np.int64)
            shift = st - (np.cumsum(ln) - ln)  # original minus normalized position, per run
            values = np.repeat(shift, ln) + np.arange(total, dtype=np.int64)
            out = array("q")
            out.frombytes(values.tobytes())
            return out
    global _POSITIONS
    positions = _POSITIONS
    top = starts[-1] + lens[-1] if starts else 0  # runs are in increasing order
    have = len(positions)
    if top > have and have < _POSITIONS_CAP:
        # A new list, bound in one step: safe when threads grow it at the same time.
        positions = positions + list(range(have, min(_POSITIONS_CAP, max(top, 2 * have))))
        _POSITIONS = positions
    cap = len(positions)
    index: list[int] = []
    ext = index.extend
    for a, b in zip(starts, lens, strict=True):
        b += a
        if b <= cap:
            ext(positions[a:b])
        else:
            ext(range(a, b))
    return index


#: Non-ASCII texts at least this long are translated through numpy (overhead ~2 us a call).
_NUMPY_MIN_CHARS = 160


# --------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class NormalizerConfig:
    """What :func:`normalize` does. All options are booleans; the defaults suit EHR notes.

    ``unify_punctuation`` also turns on the unit expansions of ``corpora/rules/normalize.json``
    (``㎎`` -> ``mg``). Whitespace variants, zero-width and control characters are always handled.

    Example:
        >>> cfg = NormalizerConfig(traditional_to_simplified=True)
        >>> NormalizerConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    fullwidth: bool = True
    unify_punctuation: bool = True
    collapse_whitespace: bool = True
    keep_newlines: bool = True
    strip: bool = True
    traditional_to_simplified: bool = False
    lowercase: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bool):
                raise TypeError(
                    f"NormalizerConfig.{f.name} must be a bool, got {describe_type(value)}"
                )

    def to_dict(self) -> dict[str, bool]:
        """Plain dict of the options (JSON-serialisable), e.g. for a model directory."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NormalizerConfig:
        """Inverse of :meth:`to_dict`. Missing keys take their defaults; unknown keys are an
        error (a config written by a newer ehrtext must not be silently half-applied)."""
        if not isinstance(d, Mapping):
            raise InputError(f"normalizer config must be a mapping, got {describe_type(d)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise InputError(
                f"normalizer config has unknown option(s) {unknown}; known: {sorted(known)}. "
                "It may have been written by a newer ehrtext: upgrade ehrtext."
            )
        try:
            return cls(**dict(d))
        except TypeError as exc:
            raise InputError(f"normalizer config: {exc}") from None


class OffsetMap:
    """Maps positions of the normalized text back to the original text.

    Internally either the identity (nothing moved) or a list ``index`` where ``index[i]`` is the
    original position of normalized char ``i``. A char produced by expanding one original char
    (``㎎`` -> ``mg``) maps, with either half, to that whole original char.

    Example:
        >>> from ehrtext.text.normalize import normalize
        >>> om = normalize("  发热\u200b３天 ").offsets
        >>> len(om), om.to_original(0, 4), om.starts_to_original([0, 2]), om.ends_to_original([4])
        (4, (2, 7), [2, 5], [7])
    """

    __slots__ = ("_idx", "_len", "_orig_len", "_ends")

    def __init__(self, index: list[int] | array[int] | None, original_length: int) -> None:
        """``index=None`` is the identity over ``original_length`` chars. Otherwise ``index``
        holds one original position per normalized char (the list is owned by the map)."""
        self._orig_len = original_length
        self._ends: list[int] | array[int] | None = None
        if index is None:
            self._idx: list[int] | array[int] | None = None
            self._len = original_length
        else:
            self._len = len(index)
            index.append(original_length)  # sentinel: position len(normalized) -> orig end
            self._idx = index

    # -- introspection -------------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    @property
    def is_identity(self) -> bool:
        """True when the normalized text has the same positions as the original."""
        return self._idx is None

    @property
    def original_length(self) -> int:
        """Length of the original text."""
        return self._orig_len

    @property
    def index(self) -> list[int] | None:
        """A copy of the per-char original positions (``None`` for the identity)."""
        return None if self._idx is None else _as_list(self._idx[:-1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OffsetMap):
            return NotImplemented
        if self._len != other._len or self._orig_len != other._orig_len:
            return False
        if self._idx is None or other._idx is None:
            a = self._idx if self._idx is not None else other._idx
            return a is None or _as_list(a[:-1]) == list(range(self._len))
        return _as_list(self._idx) == _as_list(other._idx)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "identity" if self._idx is None else "index"
        return f"OffsetMap({kind}, len={self._len}, original_length={self._orig_len})"

    # -- mapping -------------------------------------------------------------------------
    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Original span of the normalized span ``[start, end)``.

        ``start`` maps to ``index[start]``, a non-empty span's ``end`` to ``index[end-1] + 1``;
        an empty span at ``i`` maps to ``(index[i], index[i])`` (the original length at the end).
        """
        if not (0 <= start <= end <= self._len):
            raise IndexError(
                f"span ({start}, {end}) is outside the normalized text [0, {self._len}]"
            )
        idx = self._idx
        if idx is None:
            return start, end
        if start == end:
            p = idx[start]
            return p, p
        return idx[start], idx[end - 1] + 1

    def _check(self, positions: list[int]) -> None:
        if positions and (min(positions) < 0 or max(positions) > self._len):
            raise IndexError(f"a position is outside the normalized text [0, {self._len}]")

    def starts_to_original(self, starts: list[int], check: bool = True) -> list[int]:
        """Original positions of span starts (C-speed; the identity returns ``starts`` itself).

        ``check=False`` skips the bounds check (for callers whose positions come from the
        normalized text itself)."""
        if check:
            self._check(starts)
        if self._idx is None:
            return starts
        return list(map(self._idx.__getitem__, starts))

    def ends_to_original(self, ends: list[int], check: bool = True) -> list[int]:
        """Original positions of (exclusive) span ends: ``index[end-1] + 1``."""
        if check:
            self._check(ends)
        idx = self._idx
        if idx is None:
            return ends
        table = self._ends
        if table is None:
            table = _end_table(idx)
            self._ends = table
        return list(map(table.__getitem__, ends))

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; runs of consecutive positions are stored as
        ``[normalized_start, original_start]`` pairs."""
        if self._idx is None:
            return {"original_length": self._orig_len, "identity": True}
        runs: list[list[int]] = []
        prev = -2
        for i, p in enumerate(self._idx[:-1]):
            if p != prev + 1:
                runs.append([i, p])
            prev = p
        return {"original_length": self._orig_len, "length": self._len, "runs": runs}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OffsetMap:
        """Inverse of :meth:`to_dict`."""
        try:
            orig_len = int(d["original_length"])
            if d.get("identity"):
                return cls(None, orig_len)
            length = int(d["length"])
            runs = [(int(a), int(b)) for a, b in d["runs"]]
        except (KeyError, TypeError, ValueError):
            raise InputError("offset map dict is malformed") from None
        index: list[int] = []
        for k, (a, b) in enumerate(runs):
            nxt = runs[k + 1][0] if k + 1 < len(runs) else length
            if a != len(index) or nxt < a:
                raise InputError("offset map dict is malformed: runs are not contiguous")
            index.extend(range(b, b + nxt - a))
        if len(index) != length or any(not (0 <= p < orig_len) for p in index[:1] + index[-1:]):
            raise InputError("offset map dict is malformed: positions out of range")
        return cls(index, orig_len)


def _as_list(values: list[int] | array[int]) -> list[int]:
    return values if isinstance(values, list) else values.tolist()


def _end_table(idx: list[int] | array[int]) -> list[int] | array[int]:
    """``table[e]`` = original end of a span ending at ``e`` = ``idx[e - 1] + 1``; ``table[0]`` =
    ``idx[0]`` (an end at 0 only closes an empty span at 0)."""
    np = _get_numpy() if isinstance(idx, array) else None
    if np:
        values = np.frombuffer(idx, dtype=np.int64)
        out = array("q", [idx[0]])
        out.frombytes((values[:-1] + 1).tobytes())
        return out
    table = [idx[0]]
    table.extend(map((1).__add__, idx[:-1]))
    return table


class Normalized(NamedTuple):
    """Result of :func:`normalize`: the clean text, the text as given, and the offset map.

    An immutable tuple (cheap to build: it is made for every note). The repr shows lengths
    only, never note text.

    Example:
        >>> n = normalize("体温　３８．５℃")
        >>> n.text, n.to_original(3, 7), n.original[3:7]
        ('体温 38.5℃', (3, 7), '３８．５')
    """

    text: str
    original: str
    offsets: OffsetMap

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Original span of the normalized span ``[start, end)``; see
        :meth:`OffsetMap.to_original`."""
        return self.offsets.to_original(start, end)

    def __repr__(self) -> str:
        return (
            f"Normalized(len={len(self.text)}, original_len={len(self.original)}, "
            f"offsets={self.offsets!r})"
        )


# --------------------------------------------------------------------------------------------
# Tables


def _single(s: object) -> bool:
    return isinstance(s, str) and len(s) == 1


@lru_cache(maxsize=1)
def _rules() -> tuple[dict[str, str], dict[str, str]]:
    data = load_json("rules", "normalize.json")
    try:
        punct, exp = data["punctuation"], data["expansions"]
        ok = isinstance(punct, dict) and isinstance(exp, dict)
        ok = ok and all(_single(k) and isinstance(v, str) for k, v in punct.items())
        ok = ok and all(_single(k) and isinstance(v, str) and v for k, v in exp.items())
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise ResourceError(
            "corpora/rules/normalize.json is malformed: expected 'punctuation' and 'expansions' "
            "objects mapping single characters to strings"
        )
    return dict(punct), dict(exp)


@lru_cache(maxsize=1)
def _t2s() -> dict[str, str]:
    data = load_json("rules", "t2s_chars.json")
    chars = data.get("chars") if isinstance(data, dict) else None
    if not isinstance(chars, dict) or not all(_single(k) and _single(v) for k, v in chars.items()):
        raise ResourceError(
            "corpora/rules/t2s_chars.json is malformed: expected a 'chars' object of single "
            "characters; regenerate it with scripts/build_t2s_table.py"
        )
    return dict(chars)


@lru_cache(maxsize=1)
def _lowercase() -> dict[str, str]:
    out = {}
    for cp in range(0x110000):
        c = chr(cp)
        low = c.lower()
        if low != c:
            out[c] = low
    return out


def _char_class(chars: str | set[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(set(chars))) + "]"


_numpy: Any = None  # None: not tried yet; False: unavailable; else the module


def _get_numpy() -> Any:
    global _numpy
    if _numpy is None:
        try:
            import numpy

            _numpy = numpy
        except ImportError:  # pragma: no cover - numpy is a dependency
            _numpy = False
    return _numpy


class _Plan:
    """Everything precomputed for one config: tables, regexes, strip set."""

    def __init__(self, cfg: NormalizerConfig) -> None:
        nl = "\n" if cfg.keep_newlines else " "
        self.nl = nl
        self.collapse = cfg.collapse_whitespace
        self.strip = cfg.strip

        # Stages, applied in order to each char, then closed under repetition.
        stages: list[dict[str, str]] = []
        ws = {c: " " for c in _SPACE_VARIANTS}
        ws.update({c: nl for c in _NEWLINE_VARIANTS})
        if not cfg.keep_newlines:
            ws["\n"] = " "
        stages.append(ws)
        if cfg.fullwidth:
            stages.append(_FULLWIDTH)
        deletions = set(_DELETE)
        expansions: dict[str, str] = {}
        if cfg.unify_punctuation:
            punct, exp = _rules()
            stages.append(punct)
            expansions.update(exp)
        if cfg.traditional_to_simplified:
            stages.append(_t2s())
        if cfg.lowercase:
            stages.append(_lowercase())

        def step(s: str) -> str:
            for stage in stages:
                s = "".join([stage.get(c, c) for c in s])
            return s

        def close(s: str) -> str | None:
            cur = s
            for _ in range(16):
                nxt = step(cur)
                if nxt == cur:
                    return cur
                cur = nxt
            return None  # no fixed point (a cycle): leave the char alone

        special = deletions | {"\r"}
        domain = set().union(*stages) - special - set(expansions)
        table: dict[int, int] = {}
        for c in domain:
            r = close(c)
            if r is None or r == c:
                continue
            if len(r) == 1:
                table[ord(c)] = ord(r)
            elif not r:
                deletions.add(c)
            else:
                expansions[c] = r
        special = deletions | {"\r"}
        gap_ws = {" ", "\r", "\n"} if cfg.keep_newlines else {" ", "\r"}
        for c, r in list(expansions.items()):
            r2 = close(r)
            if r2 is None or not r2 or set(r2) & (special | gap_ws | set(expansions)):
                raise ResourceError(
                    f"expansion of U+{ord(c):04X} in corpora/rules/normalize.json produces "
                    "whitespace, a removed char or another expansion"
                )
            expansions[c] = r2

        self.table = table
        # str.translate looks a list up about twice as fast as a dict; characters past the
        # list (astral planes) raise IndexError, which translate treats as "unchanged".
        if all(k < 0x10000 for k in table):
            bmp = list(range(0x10000))
            for k, v in table.items():
                bmp[k] = v
            self.str_table: Any = bmp
        else:
            self.str_table = table
        # ASCII text (common in lab values, English notes) goes through bytes.translate.
        ascii_map = bytes(table.get(b, b) for b in range(128)) + bytes(range(128, 256))
        self.ascii_table = ascii_map if all(table.get(b, b) < 128 for b in range(128)) else None
        self.expansions = expansions
        self.max_extra = max((len(v) - 1 for v in expansions.values()), default=0)
        self._lut: Any = None

        gap = gap_ws | deletions
        self.strip_chars = "".join(sorted(gap | {" ", "\n"}))
        always = deletions | {"\r"} | set(expansions)
        if self.collapse:
            # A char that always needs work, or a gap char followed by another gap char.
            self.check = re.compile(
                f"{_char_class(gap | always)}(?:(?<={_char_class(always)})|{_char_class(gap)})"
            )
            # A run of 2+ gap chars, or a single char that always needs work. Written with one
            # leading class so that the regex engine can skip ahead fast.
            g, a = _char_class(gap), _char_class(always)
            self.work = re.compile(f"{_char_class(gap | always)}(?:(?<={g}){g}+|(?<={a}))")
        else:
            self.check = re.compile(_char_class(always))
            # A run of removed chars, or a single '\r' or expansion (one leading class again).
            d = _char_class(deletions)
            self.work = re.compile(f"{_char_class(always)}(?:(?<={d}){d}*)?")

    # -- step 1 --------------------------------------------------------------------------
    def translate(self, text: str) -> str:
        if text.isascii():
            if self.ascii_table is not None:
                return text.encode("ascii").translate(self.ascii_table).decode("ascii")
        elif len(text) >= _NUMPY_MIN_CHARS:
            np = _get_numpy()
            if np:
                lut = self._lut
                if lut is None:
                    lut = np.arange(0x110000, dtype=np.uint32)
                    if self.table:
                        size = len(self.table)
                        keys = np.fromiter(self.table.keys(), dtype=np.int64, count=size)
                        lut[keys] = np.fromiter(self.table.values(), dtype=np.uint32, count=size)
                    self._lut = lut
                codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
                return lut[codes].tobytes().decode("utf-32-le", "surrogatepass")
        return text.translate(self.str_table)

    # -- steps 2 and 3 -------------------------------------------------------------------
    def run(self, text: str, translated: str | None = None) -> Normalized:
        n = len(text)
        if n == 0:
            return Normalized(text, text, OffsetMap(None, 0))
        t = self.translate(text) if translated is None else translated
        lo, hi = 0, n
        if self.strip:
            sc = self.strip_chars
            if t[0] in sc:
                lo = n - len(t.lstrip(sc))
            if t[-1] in sc:
                hi = max(lo, len(t.rstrip(sc)))
        m0 = self.check.search(t, lo, hi) if hi > lo else None
        if m0 is None:
            if lo == 0 and hi == n:
                return Normalized(t, text, OffsetMap(None, n))
            return Normalized(t[lo:hi], text, OffsetMap(_build_index([lo], [hi - lo]), n))

        # Collect the output pieces and, for the index, runs of consecutive original positions:
        # normalized chars of run k map to starts[k], starts[k] + 1, ... (lens[k] of them).
        parts: list[str] = []
        starts: list[int] = []
        lens: list[int] = []
        add = parts.append
        run_start = starts.append
        run_len = lens.append
        exp = self.expansions
        collapse = self.collapse
        nl = self.nl
        pos = lo
        for m in self.work.finditer(t, m0.start(), hi):
            s, e = m.span()
            if s > pos:
                add(t[pos:s])
                run_start(pos)
                run_len(s - pos)
            c = t[s]
            rep = exp.get(c)
            if rep is not None:
                add(rep)
                starts.extend([s] * len(rep))
                lens.extend([1] * len(rep))
            elif collapse:
                g = t[s:e]
                k = -1
                if nl == "\n":
                    k1, k2 = g.find("\n"), g.find("\r")
                    k = k2 if k1 < 0 else (k1 if k2 < 0 else min(k1, k2))
                if k >= 0:
                    add("\n")
                    run_start(s + k)
                    run_len(1)
                else:
                    k1, k2 = g.find(" "), g.find("\r")
                    k = k2 if k1 < 0 else (k1 if k2 < 0 else min(k1, k2))
                    if k >= 0:
                        add(" ")
                        run_start(s + k)
                        run_len(1)
            elif c == "\r":
                if text[s + 1 : s + 2] != "\n":  # '\r\n' -> the '\n' stays; lone '\r' -> newline
                    add(nl)
                    run_start(s)
                    run_len(1)
            # else: a run of removed chars
            pos = e
        if hi > pos:
            add(t[pos:hi])
            run_start(pos)
            run_len(hi - pos)
        return Normalized("".join(parts), text, OffsetMap(_build_index(starts, lens), n))


@lru_cache(maxsize=64)
def _plan(config: NormalizerConfig) -> _Plan:
    return _Plan(config)


_DEFAULT = NormalizerConfig()
_DEFAULT_PLAN: list[_Plan] = []


def _default_plan() -> _Plan:
    plan = _plan(_DEFAULT)
    _DEFAULT_PLAN[:] = [plan]
    return plan


def normalize(text: str, config: NormalizerConfig | None = None, **overrides: bool) -> Normalized:
    """Normalize ``text`` and keep a map back to it.

    ``overrides`` replace single options of ``config`` (or of the default config).
    Raises ``TypeError`` (naming the type, never the value) for non-``str`` input; never raises
    on a ``str``. Idempotent: ``normalize(normalize(x).text).text == normalize(x).text``.

    Example:
        >>> normalize("ＢＰ　１５０／９０ｍｍＨｇ").text
        'BP 150/90mmHg'
        >>> normalize("高血壓\\r\\n\\r\\n糖尿病", traditional_to_simplified=True).text
        '高血压\\n糖尿病'
        >>> normalize("a  b\\nc", collapse_whitespace=False, keep_newlines=False).text
        'a  b c'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {describe_type(text)}")
    if config is None and not overrides:  # the common case: skip hashing the config
        plan = _DEFAULT_PLAN[0] if _DEFAULT_PLAN else _default_plan()
        return plan.run(text)
    if config is None:
        config = NormalizerConfig(**overrides)
    elif not isinstance(config, NormalizerConfig):
        raise TypeError(f"config must be a NormalizerConfig, got {describe_type(config)}")
    elif overrides:
        config = replace(config, **overrides)
    return _plan(config).run(text)


_BATCH_SEP = "\x05"  # a control character: removed by normalize, so never in its input table


def normalize_many(texts: list[str], config: NormalizerConfig | None = None) -> list[Normalized]:
    """:func:`normalize` for a list of texts, faster on many short ones (one table lookup for
    the whole batch). Same results as ``[normalize(t, config) for t in texts]``.

    Example:
        >>> [n.text for n in normalize_many(["ＢＰ", "发热　3天"])]
        ['BP', '发热 3天']
    """
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"normalize_many() expects str items, got {describe_type(text)} at position "
                f"{position}"
            )
    plan = _plan(config if config is not None else _DEFAULT)
    if len(texts) < 2:
        return [plan.run(t) for t in texts]
    joined = _BATCH_SEP.join(texts)
    if joined.count(_BATCH_SEP) != len(texts) - 1:  # a text holds the separator itself
        return [plan.run(t) for t in texts]
    translated = plan.translate(joined).split(_BATCH_SEP)
    run = plan.run
    return [run(t, tt) for t, tt in zip(texts, translated)]
