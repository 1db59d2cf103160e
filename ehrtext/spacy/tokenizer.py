"""spaCy tokenizer ``ehrtext.ChineseClinicalTokenizer.v1``: ehrtext's medical Chinese
:class:`~ehrtext.text.tokenize.Tokenizer` inside a spaCy pipeline.

Non-destructive, as every spaCy tokenizer: ``doc.text`` is the note exactly as given. A single
space after a token becomes ``token.whitespace_``; any other gap between ehrtext tokens
(newlines, several spaces, ideographic spaces, zero-width characters that normalization
removes) becomes a token of its own, ``token.is_space`` for whitespace. ``token.norm_`` holds
the normalized form (``ＢＰ`` -> ``BP``), so models read norms while offsets stay those of the
note. The dictionary, user words and settings are saved by ``nlp.to_disk`` (folder
``tokenizer/``) and come back with ``spacy.load``, unlike spaCy's own ``zh`` tokenizer, whose
jieba user dictionary is global state that is not saved.

Example:
    >>> import spacy
    >>> nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {
    ...     "@tokenizers": "ehrtext.ChineseClinicalTokenizer.v1"}}})
    >>> doc = nlp("ＢＰ 150/90mmHg，2型糖尿病")
    >>> [(t.text, t.norm_) for t in doc]
    [('ＢＰ', 'BP'), ('150/90mmHg', '150/90mmHg'), ('，', ','), ('2型糖尿病', '2型糖尿病')]
    >>> doc.text == "ＢＰ 150/90mmHg，2型糖尿病"
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy
from spacy.attrs import NORM
from spacy.tokens import Doc
from spacy.util import registry
from spacy.vocab import Vocab

from ehrtext.errors import describe_type
from ehrtext.spacy._files import load_from_bytes, save_to_bytes
from ehrtext.spacy.extensions import remember_text
from ehrtext.text.normalize import NormalizerConfig
from ehrtext.text.tokenize import Tokenizer, Tokens

__all__ = ["ChineseClinicalTokenizer", "create_chinese_clinical_tokenizer"]


class ChineseClinicalTokenizer:
    """A spaCy tokenizer over an ehrtext :class:`~ehrtext.text.tokenize.Tokenizer`.

    Args:
        vocab: the pipeline's vocab.
        tokenizer: the ehrtext tokenizer (default: ``Tokenizer()``, rjieba backend).

    Example:
        >>> from spacy.vocab import Vocab
        >>> tok = ChineseClinicalTokenizer(Vocab())
        >>> tok.add_word("左心耳封堵")
        >>> [t.text for t in tok("行左心耳封堵术")]
        ['行', '左心耳封堵', '术']
    """

    def __init__(self, vocab: Vocab, tokenizer: Tokenizer | None = None) -> None:
        self.vocab = vocab
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer()

    def __repr__(self) -> str:
        return f"ChineseClinicalTokenizer({self.tokenizer!r})"

    def __reduce__(self):
        return (ChineseClinicalTokenizer, (self.vocab, self.tokenizer))

    # -- user words --------------------------------------------------------------------------
    def add_word(self, word: str, freq: int | None = None, tag: str | None = None) -> None:
        """Add a word to the dictionary (saved with ``nlp.to_disk``)."""
        self.tokenizer.add_word(word, freq, tag)

    def load_userdict(self, path: str | Path) -> None:
        """Add the words of a jieba-format file (``word [freq] [tag]`` per line)."""
        self.tokenizer.load_userdict(path)

    # -- tokenizing --------------------------------------------------------------------------
    def __call__(self, text: str) -> Doc:
        """The :class:`~spacy.tokens.Doc` of ``text`` (``doc.text == text``)."""
        if not isinstance(text, str):
            raise TypeError(f"the tokenizer expects a str, got {describe_type(text)}")
        return self._doc(text, self.tokenizer.tokenize(text))

    def pipe(self, texts: Iterable[str], batch_size: int = 256) -> Iterator[Doc]:
        """Docs of a stream of notes, tokenized in batches (same Docs as ``__call__``)."""
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) >= batch_size:
                yield from self._batch(batch)
                batch = []
        if batch:
            yield from self._batch(batch)

    def _batch(self, texts: list[str]) -> Iterator[Doc]:
        for text, toks in zip(texts, self.tokenizer.pipe(texts, batch_size=len(texts))):
            yield self._doc(text, toks)

    def _doc(self, text: str, toks: Tokens) -> Doc:
        words: list[str] = []
        spaces: list[bool] = []
        norms: list[str] = []
        pos = 0
        for norm, s, e in zip(toks.norms, toks.starts, toks.ends):
            if e <= s or s < pos:
                continue  # never happens with ehrtext tokens; keeps the Doc valid if it did
            if s > pos:
                _gap(text[pos:s], words, spaces, norms)
            words.append(text[s:e])
            spaces.append(False)
            norms.append(norm)
            pos = e
        if pos < len(text):
            _gap(text[pos:], words, spaces, norms)
        doc = Doc(self.vocab, words=words, spaces=spaces)
        if norms:
            add = self.vocab.strings.add
            ids = numpy.fromiter((add(n) for n in norms), dtype=numpy.uint64, count=len(norms))
            doc.from_array([NORM], ids.reshape(-1, 1))
        remember_text(doc, text)  # the words cover ``text`` exactly: doc.text == text
        return doc

    # -- serialization -----------------------------------------------------------------------
    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Save the ehrtext tokenizer (settings, dictionaries, user words) into ``path``."""
        self.tokenizer.to_disk(Path(path))

    def from_disk(
        self, path: str | Path, *, exclude: Iterable[str] = ()
    ) -> ChineseClinicalTokenizer:
        """Load what :meth:`to_disk` saved."""
        self.tokenizer = Tokenizer.from_disk(Path(path))
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """The saved folder as bytes (``nlp.to_bytes``)."""
        return save_to_bytes(self.tokenizer.to_disk)

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> ChineseClinicalTokenizer:
        """Inverse of :meth:`to_bytes`."""
        self.tokenizer = load_from_bytes(data, Tokenizer.from_disk)
        return self


def _gap(gap: str, words: list[str], spaces: list[bool], norms: list[str]) -> None:
    """Text between two ehrtext tokens: one space joins the previous token, anything else is a
    token of its own, normalized to a newline or a space (characters that normalization removes,
    such as zero-width spaces, keep spaCy's default norm: an empty norm means "unset")."""
    if gap == " " and words and not spaces[-1]:
        spaces[-1] = True
        return
    words.append(gap)
    spaces.append(False)
    if "\n" in gap or "\r" in gap:
        norms.append("\n")
    elif gap.isspace():
        norms.append(" ")
    else:
        norms.append("")


@registry.tokenizers("ehrtext.ChineseClinicalTokenizer.v1")
def create_chinese_clinical_tokenizer(
    backend: str = "rjieba",
    hmm: bool = True,
    medical_dict: bool = True,
    traditional_to_simplified: bool = False,
) -> Any:
    """Registry function of ``[nlp.tokenizer] @tokenizers = "ehrtext.ChineseClinicalTokenizer.v1"``.

    User words and dictionaries are not settings: add them with
    ``nlp.tokenizer.add_word(...)``; ``nlp.to_disk`` saves them.

    Example:
        >>> make = create_chinese_clinical_tokenizer(backend="jieba")
        >>> make(spacy.blank("zh")).tokenizer.backend  # doctest: +SKIP
        'jieba'
    """
    normalizer = NormalizerConfig(traditional_to_simplified=bool(traditional_to_simplified))

    def make_tokenizer(nlp: Any) -> ChineseClinicalTokenizer:
        return ChineseClinicalTokenizer(
            nlp.vocab,
            Tokenizer(backend=backend, hmm=hmm, medical_dict=medical_dict, normalizer=normalizer),
        )

    return make_tokenizer
