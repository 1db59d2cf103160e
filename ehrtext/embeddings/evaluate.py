"""Intrinsic evaluation of clinical word vectors: synonym retrieval and category coherence.

* **Synonym retrieval.** For pairs ``(raw term, standard term)`` — e.g. a diagnosis as written
  by a doctor and its standard ICD name — rank every vocabulary word by cosine similarity to
  the raw term (the raw term itself excluded) and find the standard term: the mean reciprocal
  rank (MRR, over the full ranking) and hit@k (standard term among the ``k`` nearest). Only
  pairs where both sides are single tokens (with the given tokenizer) in the vocabulary, and
  different, can be scored; the report says how many pairs that leaves.
* **Category coherence.** For words of a category (drug, symptom, disease...), the share of
  their ``k`` nearest neighbours that belong to the same category (precision@k), next to the
  share of the vocabulary in that category (what random neighbours would score).

Readers for the public data used in ``BENCHMARKS.md`` are included (they take paths; no data
ships with ehrtext): CHIP-CDN (:func:`load_cdn_pairs`), CMeKG disease names with the ICD-10
Beijing clinical names of their codes (:func:`load_icd_alias_pairs`), and the category tags of
a jieba-format dictionary such as the shipped ``medical_words.txt`` (:func:`load_categories`).

Only numpy is needed; ``vectors`` is anything with gensim ``KeyedVectors``' ``index_to_key``,
``key_to_index`` and ``vectors``.

Example:
    >>> from ehrtext.embeddings.evaluate import synonym_retrieval
    >>> rep = synonym_retrieval(kv, [("心梗", "心肌梗死")])        # doctest: +SKIP
    >>> rep.mrr, rep.hit_at_k, rep.pairs_evaluated                # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext.errors import InputError

__all__ = [
    "CoherenceReport",
    "SynonymReport",
    "category_coherence",
    "evaluate_vectors",
    "load_categories",
    "load_cdn_pairs",
    "load_icd_alias_pairs",
    "read_pairs",
    "synonym_retrieval",
]

DEFAULT_CATEGORIES = ("drug", "symptom", "disease")
#: Similarities computed at once, at most (query rows x vocabulary), to bound memory.
_BLOCK = 1 << 24


def _unit_vectors(kv: Any) -> np.ndarray:
    """The vectors of KeyedVectors ``kv`` scaled to unit length (zero vectors stay zero)."""
    m = np.asarray(kv.vectors, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return m / norms


def _keyed(vectors: Any) -> Any:
    """The KeyedVectors of ``vectors`` (itself, or an EmbeddingResult's)."""
    if hasattr(vectors, "key_to_index"):
        return vectors
    inner = getattr(vectors, "vectors", None)
    if inner is not None and hasattr(inner, "key_to_index"):
        return inner
    raise InputError("vectors must be gensim KeyedVectors or an EmbeddingResult")


# --------------------------------------------------------------------------------------------
# Synonym retrieval


@dataclass
class SynonymReport:
    """Synonym retrieval results.

    ``pairs_total`` distinct pairs were given; ``pairs_single_token`` of them have a single
    token on both sides (always all of them without a tokenizer); ``pairs_evaluated`` of those
    have both tokens in the vocabulary and different: MRR and hit@k are over these.

    Example:
        >>> SynonymReport(pairs_total=3, pairs_evaluated=2, mrr=0.75, hit_at_k=1.0).mrr
        0.75
    """

    pairs_total: int = 0
    pairs_single_token: int = 0
    pairs_evaluated: int = 0
    mrr: float = 0.0
    hit_at_k: float = 0.0
    k: int = 10
    median_rank: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _single_tokens(
    pairs: Iterable[tuple[str, str]], tokenizer: Any
) -> tuple[int, list[tuple[str, str]]]:
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    total = 0
    for a, b in pairs:
        if not isinstance(a, str) or not isinstance(b, str):
            raise InputError("synonym pairs must be (str, str)")
        a, b = a.strip(), b.strip()
        if not a or not b or (a, b) in seen:
            continue
        seen.add((a, b))
        total += 1
        if tokenizer is not None:
            ta, tb = tokenizer.cut(a), tokenizer.cut(b)
            if len(ta) != 1 or len(tb) != 1:
                continue
            a, b = ta[0], tb[0]
        out.append((a, b))
    return total, out


def synonym_retrieval(
    vectors: Any,
    pairs: Iterable[tuple[str, str]],
    *,
    tokenizer: Any = None,
    k: int = 10,
) -> SynonymReport:
    """MRR and hit@k of the standard term among the raw term's nearest neighbours.

    Args:
        vectors: gensim ``KeyedVectors`` (or an :class:`EmbeddingResult`).
        pairs: ``(raw, standard)`` pairs; duplicates are counted once.
        tokenizer: when given, each side is tokenized and the pair kept only if both sides
            are one token (the tokenizer the vectors were trained with). Without it, the
            strings are looked up as they are.
        k: the cut-off of hit@k.

    The rank is 1 + the number of vocabulary words (the raw term excluded) strictly more
    similar to the raw term than the standard term is.

    Example:
        >>> rep = synonym_retrieval(kv, [("心梗", "心肌梗死")], k=10)   # doctest: +SKIP
    """
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    kv = _keyed(vectors)
    total, single = _single_tokens(pairs, tokenizer)
    index = kv.key_to_index
    usable = [(index[a], index[b]) for a, b in single if a != b and a in index and b in index]
    report = SynonymReport(pairs_total=total, pairs_single_token=len(single), k=k)
    report.pairs_evaluated = len(usable)
    if not usable:
        return report
    unit = _unit_vectors(kv)
    q = np.array([a for a, _ in usable])
    t = np.array([b for _, b in usable])
    ranks = np.empty(len(usable), dtype=np.int64)
    step = max(1, _BLOCK // max(1, unit.shape[0]))
    for start in range(0, len(usable), step):
        qs, ts = q[start : start + step], t[start : start + step]
        sims = unit[qs] @ unit.T
        rows = np.arange(len(qs))
        sims[rows, qs] = -np.inf  # the query itself is no neighbour
        target = sims[rows, ts][:, None]
        ranks[start : start + step] = 1 + (sims > target).sum(axis=1)
    report.mrr = float(np.mean(1.0 / ranks))
    report.hit_at_k = float(np.mean(ranks <= k))
    report.median_rank = float(np.median(ranks))
    return report


# --------------------------------------------------------------------------------------------
# Category coherence


@dataclass
class CoherenceReport:
    """Category coherence of one category: ``precision`` (precision@k averaged over
    ``queries`` query words) and ``chance`` (the category's share of the vocabulary).

    Example:
        >>> CoherenceReport("drug", queries=10, precision=0.6, chance=0.1, k=10).lift
        6.0
    """

    category: str
    queries: int = 0
    precision: float = 0.0
    chance: float = 0.0
    k: int = 10

    @property
    def lift(self) -> float:
        return round(self.precision / self.chance, 2) if self.chance else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lift"] = self.lift
        return d


def category_coherence(
    vectors: Any,
    categories: Mapping[str, str],
    *,
    labels: Sequence[str] = DEFAULT_CATEGORIES,
    k: int = 10,
    max_queries: int | None = 1000,
) -> dict[str, CoherenceReport]:
    """Precision@k that a word's nearest neighbours share its category.

    Args:
        vectors: gensim ``KeyedVectors`` (or an :class:`EmbeddingResult`).
        categories: word -> category (e.g. :func:`load_categories`).
        labels: the categories to report.
        k: neighbours per query word (the word itself excluded).
        max_queries: query words per category, the most frequent first (the vocabulary
            order); ``None`` for all.

    A neighbour without a category counts as a miss.

    Example:
        >>> cats = {"美托洛尔": "drug", "氯吡格雷": "drug"}
        >>> category_coherence(kv, cats, labels=["drug"])          # doctest: +SKIP
        {'drug': CoherenceReport(category='drug', queries=2, precision=0.1, ...)}
    """
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    kv = _keyed(vectors)
    words = kv.index_to_key
    n = len(words)
    cat_of = np.array([categories.get(w, "") for w in words], dtype=object)
    out: dict[str, CoherenceReport] = {}
    unit = None
    for label in labels:
        members = np.flatnonzero(cat_of == label)
        rep = CoherenceReport(label, k=k, chance=float(len(members) / n) if n else 0.0)
        out[label] = rep
        queries = members if max_queries is None else members[:max_queries]
        kk = min(k, n - 1)
        if len(queries) == 0 or kk < 1:
            continue
        if unit is None:
            unit = _unit_vectors(kv)
        is_label = cat_of == label
        hits = 0
        step = max(1, _BLOCK // max(1, n))
        for start in range(0, len(queries), step):
            qs = queries[start : start + step]
            sims = unit[qs] @ unit.T
            sims[np.arange(len(qs)), qs] = -np.inf
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            hits += int(is_label[top].sum())
        rep.queries = len(queries)
        rep.precision = hits / (len(queries) * k)
    return out


# --------------------------------------------------------------------------------------------
# Readers for evaluation data


def read_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Synonym pairs from a two-column TSV (``raw<TAB>standard``, no header; '#' comments).

    Example:
        >>> read_pairs("pairs.tsv")                       # doctest: +SKIP
        [('心梗', '心肌梗死'), ...]
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the pairs file ({type(exc).__name__})") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise InputError(f"{p} line {lineno}: expected two tab-separated columns")
        out.append((parts[0], parts[1]))
    return out


def load_cdn_pairs(folder: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(raw diagnosis, standard ICD name)`` pairs from CHIP-CDN (CBLUE): the train and dev
    files, records normalized to exactly one standard term.

    Example:
        >>> load_cdn_pairs("../shared/data/corpus/cblue_other/CHIP-CDN")[:1]   # doctest: +SKIP
        [('外阴上皮内瘤变', '外阴上皮内瘤样变')]
    """
    root = Path(folder)
    out: list[tuple[str, str]] = []
    files = [root / "CHIP-CDN_train.json", root / "CHIP-CDN_dev.json"]
    if not any(f.is_file() for f in files):
        raise InputError(f"{root}: no CHIP-CDN_train.json / CHIP-CDN_dev.json here")
    for f in files:
        if not f.is_file():
            continue
        try:
            rows = json.loads(f.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{f}: cannot read ({type(exc).__name__})") from None
        for row in rows:
            raw = row.get("text")
            norm = row.get("normalized_result")
            if not isinstance(raw, str) or not isinstance(norm, str):
                continue
            terms = [x.strip().strip('"').strip() for x in norm.split("##")]
            terms = [x for x in terms if x]
            if len(terms) == 1:
                out.append((raw.strip(), terms[0]))
    return out


def load_icd_alias_pairs(lexicons: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(disease name, standard ICD name)`` pairs: each CMeKG disease name with the ICD-10
    Beijing clinical v601 name of its code, where the two differ.

    Reads ``cmekg_pycmekg/disease_icd10.tsv`` (name, code) and
    ``icd10_beijing_clinical_v601_cblue/icd10_beijing_v601.tsv`` (code, name) under
    ``lexicons``.
    """
    root = Path(lexicons)
    names = root / "cmekg_pycmekg" / "disease_icd10.tsv"
    table = root / "icd10_beijing_clinical_v601_cblue" / "icd10_beijing_v601.tsv"
    for f in (names, table):
        if not f.is_file():
            raise InputError(f"{f}: not found (expected under the lexicons folder)")
    standard: dict[str, str] = {}
    with open(table, encoding="utf-8-sig", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) >= 2 and row[0].strip() and row[1].strip():
                standard.setdefault(row[0].strip(), row[1].strip())
    out = []
    with open(names, encoding="utf-8-sig", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 2:
                continue
            name, code = row[0].strip(), row[1].strip()
            std = standard.get(code)
            if name and std and std != name:
                out.append((name, std))
    return out


def load_categories(
    path: str | os.PathLike[str] | None = None, labels: Sequence[str] = DEFAULT_CATEGORIES
) -> dict[str, str]:
    """word -> category from a jieba-format dictionary's tags (``word [freq] tag``); by
    default the shipped ``corpora/dict/medical_words.txt``. Only ``labels`` are kept.

    Example:
        >>> load_categories()["美托洛尔"]
        'drug'
    """
    if path is None:
        from ehrtext.resources import corpus_path

        path = corpus_path("dict", "medical_words.txt")
    p = Path(path)
    wanted = set(labels)
    out: dict[str, str] = {}
    try:
        fh = open(p, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{p}: cannot open the dictionary ({exc.strerror})") from None
    with fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#") and parts[-1] in wanted:
                out.setdefault(parts[0], parts[-1])
    return out


# --------------------------------------------------------------------------------------------
# Everything at once


@dataclass
class EvaluationReport:
    """Synonym retrieval per pair set and category coherence, JSON-ready via :meth:`to_dict`."""

    synonyms: dict[str, SynonymReport] = field(default_factory=dict)
    coherence: dict[str, CoherenceReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        coh = {k: v.to_dict() for k, v in self.coherence.items()}
        if self.coherence:
            coh["macro_precision"] = float(np.mean([v.precision for v in self.coherence.values()]))
        return {"synonyms": {k: v.to_dict() for k, v in self.synonyms.items()}, "coherence": coh}


def evaluate_vectors(
    vectors: Any,
    *,
    pairs: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    categories: Mapping[str, str] | None = None,
    labels: Sequence[str] = DEFAULT_CATEGORIES,
    tokenizer: Any = None,
    k: int = 10,
    max_queries: int | None = 1000,
) -> EvaluationReport:
    """Synonym retrieval for each named pair set, and category coherence.

    ``categories`` defaults to the shipped dictionary's tags (:func:`load_categories`).

    Example:
        >>> pairs = {"cdn": load_cdn_pairs(folder)}                 # doctest: +SKIP
        >>> rep = evaluate_vectors(res, pairs=pairs, tokenizer=res.tokenizer())  # doctest: +SKIP
        >>> rep.to_dict()["coherence"]["drug"]["precision"]    # doctest: +SKIP
    """
    report = EvaluationReport()
    for name, ps in (pairs or {}).items():
        report.synonyms[name] = synonym_retrieval(vectors, ps, tokenizer=tokenizer, k=k)
    if categories is None:
        categories = load_categories(labels=labels)
    report.coherence = category_coherence(
        vectors, categories, labels=labels, k=k, max_queries=max_queries
    )
    return report
