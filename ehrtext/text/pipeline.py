"""The whole text layer on one note: normalize once, then tokens, sections, concepts and their
assertions, all with offsets into the note as given.

:class:`TextPipeline` runs :func:`~ehrtext.text.normalize.normalize` once per note and hands
the same :class:`~ehrtext.text.normalize.Normalized` to the tokenizer, the
:class:`~ehrtext.text.sections.Sectionizer`, the :class:`~ehrtext.text.concepts.ConceptMatcher`
and :class:`~ehrtext.text.context.ConText` (each of them would otherwise normalize the note
again). :meth:`TextPipeline.pipe` batches notes: one segmenter call and one automaton pass per
batch, and the assertions of a whole batch in one numpy pass (the same as note by note). It is
what ``ehrtext annotate`` runs; the spaCy components (``ehrtext.spacy``) wrap the same objects.

Example:
    >>> from ehrtext.text.pipeline import TextPipeline
    >>> a = TextPipeline().annotate("主诉：发热3天。既往史：否认高血压病史。")
    >>> [s.name for s in a.sections]
    ['chief_complaint', 'past_history']
    >>> [(c.text, x.negated, x.historical) for c, x in zip(a.concepts, a.assertions)]
    [('发热', False, False), ('高血压病', True, True)]
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from ehrtext.errors import describe_type
from ehrtext.text.concepts import ConceptMatcher, Concepts
from ehrtext.text.context import Assertions, ConText
from ehrtext.text.normalize import Normalized, NormalizerConfig, normalize_many
from ehrtext.text.sections import Section, Sectionizer
from ehrtext.text.tokenize import Tokenizer, Tokens

__all__ = ["NoteAnnotation", "TextPipeline"]


class NoteAnnotation(NamedTuple):
    """Everything :class:`TextPipeline` found in one note (offsets into ``text``, the note as
    given). ``tokens`` is ``None`` when the pipeline was built with ``tokenize=False``.
    ``assertions[i]`` (an :class:`~ehrtext.text.context.Assertion`) belongs to ``concepts[i]``;
    like the tokens and the concepts, the assertions are stored column-wise
    (``assertions.negated`` is the list of the flags)."""

    text: str
    tokens: Tokens | None
    sections: list[Section]
    concepts: Concepts
    assertions: Assertions

    def to_dict(self, with_tokens: bool = False) -> dict[str, Any]:
        """JSON-serialisable form: ``{"sections": [...], "concepts": [...]}``; each concept has
        ``start, end, text, norm, category, source``, the five assertion flags, ``section``
        (the name of the section it lies in) and ``cues`` (offsets and rule names).

        Example:
            >>> d = TextPipeline().annotate("家族史：母亲有糖尿病。").to_dict()
            >>> c = d["concepts"][0]
            >>> c["text"], c["family"], c["section"], d["sections"][0]["name"]
            ('糖尿病', True, 'family_history', 'family_history')
        """
        sections = self.sections
        sec_starts = [s.start for s in sections]
        concepts = []
        j = -1
        n_sec = len(sections)
        for c, a in zip(self.concepts, self.assertions, strict=True):
            while j + 1 < n_sec and sec_starts[j + 1] <= c.start:
                j += 1
            concepts.append(
                {
                    "start": c.start,
                    "end": c.end,
                    "text": c.text,
                    "norm": c.norm,
                    "category": c.category,
                    "source": c.source,
                    "negated": a.negated,
                    "uncertain": a.uncertain,
                    "historical": a.historical,
                    "family": a.family,
                    "hypothetical": a.hypothetical,
                    "section": sections[j].name if j >= 0 and c.start < sections[j].end else None,
                    "cues": [cue._asdict() for cue in a.cues],
                }
            )
        out: dict[str, Any] = {
            "sections": [s.to_dict() for s in sections],
            "concepts": concepts,
        }
        if with_tokens and self.tokens is not None:
            out["tokens"] = self.tokens.to_list()
        return out


class TextPipeline:
    """normalize → tokenize → sections → concepts → context, normalizing each note once.

    Args:
        tokenizer: an ehrtext :class:`~ehrtext.text.tokenize.Tokenizer` (default: a new one).
        sectionizer: a :class:`~ehrtext.text.sections.Sectionizer` (default: shipped rules).
        concepts: a :class:`~ehrtext.text.concepts.ConceptMatcher` (default: shipped lexicons).
        context: a :class:`~ehrtext.text.context.ConText` (default: shipped rules).
        tokenize: also return the tokens (the other stages do not need them).
        pause_gc: pause Python's cyclic garbage collector while a batch is processed (it is
            switched back on after each batch, and left alone when it was off). A batch
            allocates hundreds of thousands of small objects that hold no reference cycles;
            each generation-2 collection they trigger walks every object of the process,
            which in a process that has also loaded spaCy or torch costs more than the
            pipeline itself (``scripts/bench_pipeline.py``). Set ``False`` if another thread
            relies on the collector running during a batch.

    All stages should share one :class:`NormalizerConfig` (the defaults do); a stage with
    another one normalizes the note again with its own.

    Example:
        >>> pipe = TextPipeline(tokenize=False)
        >>> [len(a.concepts) for a in pipe.pipe(["无发热。", "咳嗽3天"])]
        [1, 1]
    """

    def __init__(
        self,
        tokenizer: Tokenizer | None = None,
        sectionizer: Sectionizer | None = None,
        concepts: ConceptMatcher | None = None,
        context: ConText | None = None,
        *,
        tokenize: bool = True,
        pause_gc: bool = True,
    ) -> None:
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer()
        self.sectionizer = sectionizer if sectionizer is not None else Sectionizer()
        self.concepts = concepts if concepts is not None else ConceptMatcher()
        self.context = context if context is not None else ConText()
        self.tokenize = bool(tokenize)
        self.pause_gc = bool(pause_gc)
        self.normalizer: NormalizerConfig = self.tokenizer.normalizer
        default = NormalizerConfig()

        def same(cfg: NormalizerConfig | None) -> bool:
            return (cfg if cfg is not None else default) == self.normalizer

        self._sections_shared = same(self.sectionizer.normalizer)
        self._concepts_shared = same(self.concepts.normalizer)
        self._context_shared = same(self.context.normalizer)

    def __repr__(self) -> str:
        return f"TextPipeline(tokenize={self.tokenize})"

    def annotate(self, text: str) -> NoteAnnotation:
        """Tokens, sections, concepts and assertions of one note."""
        return self._batch([text], 0)[0]

    __call__ = annotate

    def pipe(self, texts: Iterable[str], batch_size: int = 256) -> Iterator[NoteAnnotation]:
        """:meth:`annotate` over a stream of notes, in batches (same results, faster).

        Raises ``TypeError`` naming the type and position of a non-``str`` item.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        batch: list[str] = []
        first = 0
        for text in texts:
            batch.append(text)
            if len(batch) >= batch_size:
                yield from self._batch(batch, first)
                first += len(batch)
                batch = []
        if batch:
            yield from self._batch(batch, first)

    def _batch(self, texts: list[str], first: int) -> list[NoteAnnotation]:
        if not self.pause_gc or not gc.isenabled():
            return self._run_batch(texts, first)
        gc.disable()
        try:
            return self._run_batch(texts, first)
        finally:
            gc.enable()

    def _run_batch(self, texts: list[str], first: int) -> list[NoteAnnotation]:
        for k, t in enumerate(texts):
            if not isinstance(t, str):
                kind = describe_type(t)
                raise TypeError(f"TextPipeline expects str, got {kind} at position {first + k}")
        normalized = normalize_many(texts, self.normalizer)
        tokens: list[Tokens | None]
        if self.tokenize:
            tokens = list(_tokens_of(self.tokenizer, texts, normalized))
        else:
            tokens = [None] * len(texts)
        sz, ctx = self.sectionizer, self.context
        sections = [sz(n if self._sections_shared else t) for t, n in zip(texts, normalized)]
        concepts = list(self.concepts.pipe(normalized if self._concepts_shared else texts))
        # the matcher's columns are valid and sorted: no (start, end) pairs, no checks; one
        # numpy pass over the batch
        norms = normalized if self._context_shared else [ctx._normalize(t) for t in texts]
        asserted = ctx._apply_many(norms, [(cs.starts, cs.ends) for cs in concepts], sections)
        return list(map(NoteAnnotation, texts, tokens, sections, concepts, asserted))


def _tokens_of(
    tokenizer: Tokenizer, texts: list[str], normalized: list[Normalized]
) -> Iterator[Tokens]:
    """The tokens of already normalized notes (what ``Tokenizer.pipe`` gives, without
    normalizing again)."""
    cut = tokenizer._segment_many([n.text for n in normalized])  # one segmenter call a batch
    for text, n, (norms, starts, ends) in zip(texts, normalized, cut, strict=True):
        offsets = n.offsets
        if not offsets.is_identity:
            starts = offsets.starts_to_original(starts, check=False)
            ends = offsets.ends_to_original(ends, check=False)
        yield Tokens(text, norms, starts, ends)
