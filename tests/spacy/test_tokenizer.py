"""The spaCy tokenizer ehrtext.ChineseClinicalTokenizer.v1: non-destructive, norms, user words
and dictionaries saved with the pipeline."""

from __future__ import annotations

import pytest
import spacy

from ehrtext.spacy.extensions import doc_text
from ehrtext.spacy.tokenizer import ChineseClinicalTokenizer
from ehrtext.text import Tokenizer

from .conftest import NOTES

CONFIG = {"nlp": {"tokenizer": {"@tokenizers": "ehrtext.ChineseClinicalTokenizer.v1"}}}


@pytest.fixture(scope="module")
def blank():
    return spacy.blank("zh", config=CONFIG)


@pytest.mark.parametrize("note", NOTES + ["  ", "\n", "无", "a  b\tc\u3000d", "\u200b\u200b发热"])
def test_doc_text_is_the_note_as_given(blank, note):
    doc = blank(note)
    assert doc.text == note
    assert "".join(t.text_with_ws for t in doc) == note
    assert doc_text(doc) == note  # what the components read, recorded by the tokenizer


def test_tokens_and_norms_follow_the_ehrtext_tokenizer(blank):
    note = "ＢＰ　150/90mmHg，既往２型糖尿病史"
    doc = blank(note)
    ours = Tokenizer().tokenize(note)
    words = [t for t in doc if not t.is_space]
    assert [(t.idx, t.idx + len(t.text)) for t in words] == list(zip(ours.starts, ours.ends))
    assert [t.norm_ for t in words] == ours.norms
    assert [t.norm_ for t in words][:2] == ["BP", "150/90mmHg"]
    assert doc[0].text == "ＢＰ"  # the text stays as given


def test_gaps_become_whitespace_or_tokens(blank):
    doc = blank("发热 咳嗽\n\n胸痛")
    assert [t.text for t in doc] == ["发热", "咳嗽", "\n\n", "胸痛"]
    assert doc[0].whitespace_ == " "
    assert doc[2].is_space and doc[2].norm_ == "\n"


def test_real_notes_round_trip(blank, real_notes):
    docs = list(blank.tokenizer.pipe(real_notes))
    for note, doc in zip(real_notes, docs, strict=True):
        assert doc.text == note == doc_text(doc)
        words = [t for t in doc if not t.is_space]
        assert all(note[t.idx : t.idx + len(t.text)] == t.text for t in words)
    # pipe and __call__ agree
    assert [t.text for t in blank(real_notes[3])] == [t.text for t in docs[3]]


def test_doc_text_of_any_doc():
    nlp = spacy.blank("zh")  # spaCy's own tokenizer: the text is built on first use, then kept
    doc = nlp("否认高血压")
    assert doc_text(doc) == "否认高血压" and doc_text(doc) is doc_text(doc)
    with doc.retokenize() as retokenizer:  # the text of a Doc never changes
        retokenizer.merge(doc[0:2])
    assert doc_text(doc) == doc.text
    copy = doc.copy()
    assert doc_text(copy) == doc.text and copy.text == doc.text


def test_user_word_survives_to_disk_and_bytes(tmp_path):
    nlp = spacy.blank("zh", config=CONFIG)
    assert [t.text for t in nlp("行左心耳封堵术")] != ["行", "左心耳封堵", "术"]
    nlp.tokenizer.add_word("左心耳封堵")
    assert [t.text for t in nlp("行左心耳封堵术")] == ["行", "左心耳封堵", "术"]
    nlp.to_disk(tmp_path / "p")
    again = spacy.load(tmp_path / "p")
    assert isinstance(again.tokenizer, ChineseClinicalTokenizer)
    assert [t.text for t in again("行左心耳封堵术")] == ["行", "左心耳封堵", "术"]
    assert again.tokenizer.tokenizer.dictionary_hash == nlp.tokenizer.tokenizer.dictionary_hash
    fresh = spacy.blank("zh", config=CONFIG)
    fresh.tokenizer.from_bytes(nlp.tokenizer.to_bytes())
    assert [t.text for t in fresh("行左心耳封堵术")] == ["行", "左心耳封堵", "术"]


def test_user_dictionary_file_travels(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("房颤射频消融 10 n\n", encoding="utf-8")
    nlp = spacy.blank("zh", config=CONFIG)
    nlp.tokenizer.load_userdict(words)
    nlp.to_disk(tmp_path / "p")
    words.unlink()  # the saved pipeline must not depend on the original file
    again = spacy.load(tmp_path / "p")
    assert "房颤射频消融" in [t.text for t in again("房颤射频消融后")]


def test_settings_in_the_config(tmp_path):
    cfg = {"nlp": {"tokenizer": {**CONFIG["nlp"]["tokenizer"], "backend": "jieba"}}}
    nlp = spacy.blank("zh", config=cfg)
    assert nlp.tokenizer.tokenizer.backend == "jieba"
    nlp.to_disk(tmp_path / "p")
    assert spacy.load(tmp_path / "p").tokenizer.tokenizer.backend == "jieba"


def test_non_str_is_a_type_error(blank):
    with pytest.raises(TypeError, match="int"):
        blank.tokenizer(3)
