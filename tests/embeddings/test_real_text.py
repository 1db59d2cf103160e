"""A small model on real EMR text (../shared/data): its neighbours make clinical sense."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ehrtext.embeddings import train_word2vec
from ehrtext.embeddings.evaluate import category_coherence, load_categories

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.shared_data
def test_coherence_on_real_emr_notes(shared_data, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from shared_corpus import emr_notes
    finally:
        sys.path.remove(str(REPO / "scripts"))
    notes = list(emr_notes(shared_data))  # ~2,900 real notes, 4.4 MB, ~0.8 M tokens
    res = train_word2vec(
        notes, tmp_path / "v", sg=1, vector_size=32, epochs=2, min_count=5, workers=2,
        prep_workers=2, save_formats=("bin",), progress=False,
    )  # fmt: skip
    assert res.corpus["notes"] == len(notes) and res.vocab_size > 5000
    coh = category_coherence(res, load_categories(), k=10, max_queries=300)
    # measured: drug 0.32, symptom 0.34, disease 0.32 (chance 0.02, 0.13, 0.05)
    for label, rep in coh.items():
        assert rep.queries >= 100, label
        assert rep.precision > 0.2, (label, rep)
        assert rep.precision > 2 * rep.chance, (label, rep)
