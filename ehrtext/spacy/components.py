"""spaCy components over ehrtext's text layer: ``ehr_sections``, ``ehr_concepts``,
``ehr_context`` and ``ehr_deid``.

Each is one small class that wraps the Python API object (:class:`Sectionizer`,
:class:`ConceptMatcher`, :class:`ConText`, :class:`Deidentifier`), writes plain dicts with
character offsets into the extensions of :mod:`ehrtext.spacy.extensions` and a span group,
and saves its rules and dictionaries with ``nlp.to_disk`` (a user-added rule or term comes back
with ``spacy.load``). The factories are declared as ``spacy_factories`` entry points, so
``spacy.load`` of a saved pipeline works without ``import ehrtext``.

Example:
    >>> import spacy
    >>> nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {
    ...     "@tokenizers": "ehrtext.ChineseClinicalTokenizer.v1"}}})
    >>> for name in ("ehr_sections", "ehr_concepts", "ehr_context"):
    ...     _ = nlp.add_pipe(name)
    >>> doc = nlp("既往史：否认糖尿病史。")
    >>> [(c["norm"], c["negated"], c["historical"]) for c in doc._.ehr_concepts]
    [('糖尿病', True, True)]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc, Span

from ehrtext.errors import InputError, ResourceError
from ehrtext.spacy._files import load_from_bytes, save_to_bytes
from ehrtext.spacy.extensions import (
    CONCEPTS_KEY,
    PHI_KEY,
    SECTIONS_KEY,
    doc_text,
    register_extensions,
)
from ehrtext.text.concepts import ConceptMatcher
from ehrtext.text.context import ConText, ContextRule, _int_pairs
from ehrtext.text.deid import Deidentifier, DeidRules
from ehrtext.text.sections import Section, Sectionizer, SectionRule

__all__ = [
    "ConceptsComponent",
    "ContextComponent",
    "DeidComponent",
    "SectionsComponent",
    "make_concepts",
    "make_context",
    "make_deid",
    "make_sections",
]

#: Environment variable holding the secret of ``ehr_deid`` with ``strategy="surrogate"`` (a
#: secret is never a config value: configs are saved with the pipeline).
SECRET_ENV = "EHRTEXT_DEID_SECRET"


def _span_group(doc: Doc, key: str, items: Iterable[tuple[int, int, str]]) -> None:
    """``doc.spans[key]`` from ``(start_char, end_char, label)``, widened to token bounds."""
    spans: list[Span] = []
    for s, e, label in items:
        span = doc.char_span(s, e, label=label, alignment_mode="expand")
        if span is not None and len(span):
            spans.append(span)
    doc.spans[key] = spans


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResourceError(f"{path} is missing: the saved pipeline is incomplete") from None
    except json.JSONDecodeError as exc:
        raise ResourceError(f"{path} is not valid JSON: {exc}") from None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


class _Component:
    """Shared ``pipe`` / ``to_bytes`` / ``from_bytes`` of the components (state is a folder)."""

    name: str

    def __call__(self, doc: Doc) -> Doc:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def pipe(self, docs: Iterable[Doc], batch_size: int = 256) -> Iterator[Doc]:
        """``__call__`` over a stream of docs, ``batch_size`` docs at a time (a component
        whose Python API has a batch path overrides :meth:`_batch`; same results)."""
        batch: list[Doc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield from self._batch(batch)
                batch = []
        if batch:
            yield from self._batch(batch)

    def _batch(self, docs: list[Doc]) -> Iterator[Doc]:
        return map(self, docs)

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        raise NotImplementedError  # pragma: no cover

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> Any:
        raise NotImplementedError  # pragma: no cover

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """The :meth:`to_disk` folder as bytes (``nlp.to_bytes``)."""
        return save_to_bytes(self.to_disk)

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> Any:
        """Inverse of :meth:`to_bytes`."""
        return load_from_bytes(data, self.from_disk)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# --------------------------------------------------------------------------------------------
# ehr_sections


class SectionsComponent(_Component):
    """Splits the doc into sections (主诉, 现病史, 既往史 ...): ``doc._.ehr_sections`` and the span
    group ``doc.spans["ehr_sections"]`` (label: canonical name).

    Example:
        >>> nlp = spacy.blank("zh")                                   # doctest: +SKIP
        >>> sections = nlp.add_pipe("ehr_sections")                   # doctest: +SKIP
        >>> sections.add_rule({"name": "imaging", "title": "影像学检查",
        ...                    "variants": ["影像学检查"]})             # doctest: +SKIP
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "ehr_sections",
        *,
        spans_key: str = SECTIONS_KEY,
        sectionizer: Sectionizer | None = None,
    ) -> None:
        register_extensions()
        self.name = name
        self.spans_key = spans_key
        self.sectionizer = sectionizer if sectionizer is not None else Sectionizer()

    def add_rule(self, rule: SectionRule | Mapping[str, Any]) -> None:
        """Add (or replace, by name) a section rule; saved with ``nlp.to_disk``."""
        self.sectionizer.add_rule(rule)

    def __call__(self, doc: Doc) -> Doc:
        sections = self.sectionizer(doc_text(doc))
        doc._.ehr_sections = [s.to_dict() for s in sections]
        if self.spans_key:
            _span_group(doc, self.spans_key, ((s.start, s.end, s.name) for s in sections))
        return doc

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Save the rules as ``sections.json`` in the folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _write_json(path / "sections.json", self.sectionizer.to_dict())

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> SectionsComponent:
        """Load the rules saved by :meth:`to_disk`."""
        data = _read_json(Path(path) / "sections.json")
        try:
            self.sectionizer = Sectionizer.from_dict(data)
        except InputError as exc:
            raise ResourceError(f"{Path(path) / 'sections.json'}: {exc}") from None
        return self


@Language.factory(
    "ehr_sections",
    default_config={"spans_key": SECTIONS_KEY},
    assigns=["doc._.ehr_sections"],
)
def make_sections(nlp: Language, name: str, spans_key: str) -> SectionsComponent:
    """Factory of ``ehr_sections`` (shipped rules; add your own with ``add_rule``)."""
    return SectionsComponent(nlp, name, spans_key=spans_key)


# --------------------------------------------------------------------------------------------
# ehr_concepts


class ConceptsComponent(_Component):
    """Dictionary concepts (disease, symptom, drug, exam, procedure, body part):
    ``doc._.ehr_concepts`` and ``doc.spans["ehr_concepts"]`` (label: category).

    Example:
        >>> concepts = nlp.add_pipe("ehr_concepts")                   # doctest: +SKIP
        >>> concepts.add_terms(["心脏神经官能症"], "disease")           # doctest: +SKIP
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "ehr_concepts",
        *,
        categories: list[str] | None = None,
        min_len: int = 2,
        spans_key: str = CONCEPTS_KEY,
        matcher: ConceptMatcher | None = None,
    ) -> None:
        register_extensions()
        self.name = name
        self.spans_key = spans_key
        if matcher is None:
            matcher = ConceptMatcher(categories=categories, min_len=min_len)
        self.matcher = matcher

    def add_terms(self, terms: str | Iterable[str], category: str) -> None:
        """Add terms of ``category``; they win over the lexicon and are saved with the pipeline."""
        self.matcher.add_terms(terms, category)

    def __call__(self, doc: Doc) -> Doc:
        return self._set(doc, self.matcher.find(doc_text(doc)))

    def _batch(self, docs: list[Doc]) -> Iterator[Doc]:
        """One automaton pass for the batch (:meth:`_Component.pipe`)."""
        found = self.matcher.pipe(list(map(doc_text, docs)), batch_size=max(1, len(docs)))
        for doc, concepts in zip(docs, found):
            yield self._set(doc, concepts)

    def _set(self, doc: Doc, concepts: Any) -> Doc:
        doc._.ehr_concepts = [
            {"start": s, "end": e, "norm": n, "category": c, "source": src}
            for s, e, n, c, src in zip(
                concepts.starts, concepts.ends, concepts.norms, concepts.categories,
                concepts.sources,
            )
        ]  # fmt: skip
        if self.spans_key:
            _span_group(
                doc, self.spans_key, zip(concepts.starts, concepts.ends, concepts.categories)
            )
        return doc

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Save settings, user terms (and a custom lexicon) into the folder ``path``."""
        self.matcher.to_disk(Path(path))

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> ConceptsComponent:
        """Load what :meth:`to_disk` saved."""
        self.matcher = ConceptMatcher.from_disk(Path(path))
        return self


@Language.factory(
    "ehr_concepts",
    default_config={"categories": None, "min_len": 2, "spans_key": CONCEPTS_KEY},
    assigns=["doc._.ehr_concepts"],
)
def make_concepts(
    nlp: Language, name: str, categories: list[str] | None, min_len: int, spans_key: str
) -> ConceptsComponent:
    """Factory of ``ehr_concepts`` (``categories=None``: the six default categories)."""
    return ConceptsComponent(nlp, name, categories=categories, min_len=min_len, spans_key=spans_key)


# --------------------------------------------------------------------------------------------
# ehr_context


class ContextComponent(_Component):
    """Assertion of each concept (ConText for Chinese): adds ``negated``, ``uncertain``,
    ``historical``, ``family``, ``hypothetical`` and ``cues`` to every dict of
    ``doc._.ehr_concepts``; uses ``doc._.ehr_sections`` when ``ehr_sections`` ran before.

    Example:
        >>> context = nlp.add_pipe("ehr_context")                     # doctest: +SKIP
        >>> context.add_rule({"cue": "未提示", "category": "NEGATED_EXISTENCE",
        ...                   "direction": "forward"})                # doctest: +SKIP
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "ehr_context",
        *,
        section_defaults: bool = True,
        context: ConText | None = None,
    ) -> None:
        register_extensions()
        self.name = name
        self.context = (
            context if context is not None else ConText(section_defaults=section_defaults)
        )

    def add_rule(self, rule: ContextRule | Mapping[str, Any]) -> None:
        """Add a ConText rule; saved with ``nlp.to_disk``."""
        self.context.add_rule(rule)

    def __call__(self, doc: Doc) -> Doc:
        concepts = doc._.ehr_concepts
        if not concepts:
            return doc
        sections = [Section.from_dict(s) for s in doc._.ehr_sections] or None
        spans = [(c["start"], c["end"]) for c in concepts]
        tokens = None
        if any(r.scope_unit == "tokens" for r in self.context.rules):
            tokens = [(t.idx, t.idx + len(t)) for t in doc if not t.is_space]
        return _with_flags(doc, self.context.apply(doc_text(doc), spans, sections, tokens))

    def _batch(self, docs: list[Doc]) -> Iterator[Doc]:
        """The assertions of the batch in one pass (:meth:`_Component.pipe`), as
        :class:`~ehrtext.text.pipeline.TextPipeline` does."""
        ctx = self.context
        if len(docs) == 1 or any(r.scope_unit == "tokens" for r in ctx.rules):
            yield from map(self, docs)  # token scopes need each doc's tokens
            return
        norms, columns, sections, alone = [], [], [], set()
        for k, doc in enumerate(docs):
            concepts = doc._.ehr_concepts
            text = doc_text(doc)
            try:
                spans = _int_pairs([(c["start"], c["end"]) for c in concepts])
            except (TypeError, KeyError):
                spans = None
            starts = [s for s, _ in spans] if spans else []
            ends = [e for _, e in spans] if spans else []
            if spans is None or (
                spans
                and (max(ends) > len(text) or not all([a <= b for a, b in zip(spans, spans[1:])]))
            ):
                alone.add(k)  # spans set by hand: __call__ checks them and says what is wrong
                starts, ends = [], []
            norms.append(ctx._normalize(text))
            columns.append((starts, ends))
            secs = [Section.from_dict(s) for s in doc._.ehr_sections] if starts else []
            sections.append(secs or None)
        asserted = ctx._apply_many(norms, columns, sections)
        for k, (doc, assertions) in enumerate(zip(docs, asserted, strict=True)):
            if k in alone:
                yield self(doc)
            elif assertions:
                yield _with_flags(doc, assertions)
            else:
                yield doc

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Save the rules as ``context.json`` in the folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _write_json(path / "context.json", self.context.to_dict())

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> ContextComponent:
        """Load the rules saved by :meth:`to_disk`."""
        data = _read_json(Path(path) / "context.json")
        try:
            self.context = ConText.from_dict(data)
        except InputError as exc:
            raise ResourceError(f"{Path(path) / 'context.json'}: {exc}") from None
        return self


def _with_flags(doc: Doc, assertions: Iterable[Any]) -> Doc:
    """``doc._.ehr_concepts`` with the flags and cues of ``assertions`` (one per concept)."""
    out = []
    for c, a in zip(doc._.ehr_concepts, assertions, strict=True):
        d = dict(c)
        d.update(a.flags())
        d["cues"] = [cue._asdict() for cue in a.cues]
        out.append(d)
    doc._.ehr_concepts = out
    return doc


@Language.factory(
    "ehr_context",
    default_config={"section_defaults": True},
    requires=["doc._.ehr_concepts"],
    assigns=["doc._.ehr_concepts"],
)
def make_context(nlp: Language, name: str, section_defaults: bool) -> ContextComponent:
    """Factory of ``ehr_context`` (shipped rules; add your own with ``add_rule``)."""
    return ContextComponent(nlp, name, section_defaults=section_defaults)


# --------------------------------------------------------------------------------------------
# ehr_deid

# The word lists of DeidRules, saved one file each.
_DEID_LISTS = ("surnames", "name_stopwords", "given_chars", "address_words")


def _save_deid_rules(rules: DeidRules, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _write_json(path / "deid.json", rules.data)
    lists = {
        "surnames": [*rules.surname_list, *rules.compound_list],
        "name_stopwords": sorted(rules.name_stopwords),
        "given_chars": list(rules.given_chars),
        "address_words": list(rules.address_words),
    }
    for key in _DEID_LISTS:
        (path / f"{key}.txt").write_text("\n".join(lists[key]) + "\n", encoding="utf-8")
    places = [f"{p}\tprovince" for p in rules.provinces] + [f"{c}\tcity" for c in rules.cities]
    (path / "places.tsv").write_text("\n".join(places) + "\n", encoding="utf-8")


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResourceError(f"{path} is missing: the saved pipeline is incomplete") from None
    return [line for line in text.split("\n") if line.strip()]


def _load_deid_rules(path: Path) -> DeidRules:
    data = _read_json(path / "deid.json")
    lists = {key: _read_lines(path / f"{key}.txt") for key in _DEID_LISTS}
    places = []
    for line in _read_lines(path / "places.tsv"):
        name, _, level = line.partition("\t")
        places.append((name, level))
    return DeidRules(
        data,
        surnames=lists["surnames"],
        places=places,
        name_stopwords=lists["name_stopwords"],
        given_chars=lists["given_chars"],
        address_words=lists["address_words"],
        source=str(path),
    )


class DeidComponent(_Component):
    """De-identification: ``doc._.ehr_phi`` (offsets and types, no PHI text),
    ``doc.spans["ehr_phi"]`` (label: PHI type) and ``doc._.ehr_deid`` = ``{"text", "strategy",
    "counts"}``, the note with its PHI tagged, masked or replaced (``doc.text`` never changes).

    ``strategy="surrogate"`` reads its secret from the environment variable named by
    ``secret_env`` (default ``EHRTEXT_DEID_SECRET``), never from the config, which is saved
    with the pipeline. Set ``doc._.ehr_patient_id`` for consistent surrogates per patient.

    Example:
        >>> deid = nlp.add_pipe("ehr_deid", config={"strategy": "mask"})   # doctest: +SKIP
        >>> deid.add_name_stopwords(["张力"])                               # doctest: +SKIP
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "ehr_deid",
        *,
        strategy: str = "tag",
        types: list[str] | None = None,
        mask_char: str = "*",
        secret_env: str = SECRET_ENV,
        spans_key: str = PHI_KEY,
    ) -> None:
        register_extensions()
        self.name = name
        self.strategy = strategy
        self.types = list(types) if types is not None else None
        self.mask_char = mask_char
        self.secret_env = secret_env
        self.spans_key = spans_key
        self._build(DeidRules.default())

    def _build(self, rules: DeidRules) -> None:
        secret = None
        if self.strategy == "surrogate":
            secret = os.environ.get(self.secret_env)
            if not secret:
                raise InputError(
                    f"ehr_deid with strategy 'surrogate' needs a secret in the environment "
                    f"variable {self.secret_env} (never in the config, which is saved)"
                )
        self.deidentifier = Deidentifier(
            strategy=self.strategy,
            secret=secret,
            types=self.types,
            rules=rules,
            mask_char=self.mask_char,
        )

    @property
    def rules(self) -> DeidRules:
        """The rule data in use (``deid.json`` and its word lists)."""
        return self.deidentifier.rules

    def add_name_stopwords(self, words: Iterable[str]) -> None:
        """Words never taken for names (e.g. a ward's jargon); saved with ``nlp.to_disk``."""
        r = self.rules
        extra = [w for w in words if isinstance(w, str) and w.strip()]
        self._build(
            DeidRules(
                r.data,
                surnames=[*r.surname_list, *r.compound_list],
                places=[(p, "province") for p in r.provinces] + [(c, "city") for c in r.cities],
                name_stopwords=sorted(set(r.name_stopwords) | set(extra)),
                given_chars=r.given_chars,
                address_words=r.address_words,
                source=r.source,
            )
        )

    def __call__(self, doc: Doc) -> Doc:
        pid = doc._.ehr_patient_id
        result = self.deidentifier.deidentify(doc_text(doc), None if pid is None else str(pid))
        doc._.ehr_phi = [s._asdict() for s in result.spans]
        doc._.ehr_deid = {
            "text": result.text,
            "strategy": result.strategy,
            "counts": dict(result.counts),
        }
        if self.spans_key:
            _span_group(doc, self.spans_key, ((s.start, s.end, s.type) for s in result.spans))
        return doc

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Save the rule data and word lists into the folder ``path`` (never the secret)."""
        _save_deid_rules(self.rules, Path(path))

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> DeidComponent:
        """Load the rules saved by :meth:`to_disk`."""
        self._build(_load_deid_rules(Path(path)))
        return self


@Language.factory(
    "ehr_deid",
    default_config={
        "strategy": "tag",
        "types": None,
        "mask_char": "*",
        "secret_env": SECRET_ENV,
        "spans_key": PHI_KEY,
    },
    assigns=["doc._.ehr_phi", "doc._.ehr_deid"],
)
def make_deid(
    nlp: Language,
    name: str,
    strategy: str,
    types: list[str] | None,
    mask_char: str,
    secret_env: str,
    spans_key: str,
) -> DeidComponent:
    """Factory of ``ehr_deid`` (``strategy``: tag, mask or surrogate; ``types``: a subset of
    :data:`~ehrtext.text.deid.PHI_TYPES`, ``None`` for all)."""
    return DeidComponent(
        nlp,
        name,
        strategy=strategy,
        types=types,
        mask_char=mask_char,
        secret_env=secret_env,
        spans_key=spans_key,
    )
