"""The spaCy components ehr_sections, ehr_concepts, ehr_context, ehr_deid: what they set,
save -> load of user rules, a fresh process without `import ehrtext`, serialisation of the
extensions, n_process=2, displaCy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin

import ehrtext
from ehrtext.errors import InputError
from ehrtext.spacy import render
from ehrtext.text.deid import Deidentifier
from ehrtext.text.pipeline import TextPipeline
from ehrtext.text.sections import split_sections

from .conftest import NOTES, doc_key

REPO = Path(__file__).resolve().parents[2]


def concepts_by_text(doc) -> dict[str, dict]:
    return {doc.text[c["start"] : c["end"]]: c for c in doc._.ehr_concepts}


def test_load_pipeline_has_every_component(nlp):
    assert nlp.pipe_names == ["ehr_sections", "ehr_concepts", "ehr_context", "ehr_deid"]
    assert nlp.lang == "zh"
    assert nlp.meta["name"] == "ehrtext_clinical"


def test_sections_concepts_assertions(nlp):
    doc = nlp(NOTES[0])
    assert [s["name"] for s in doc._.ehr_sections] == [
        "chief_complaint",
        "present_illness",
        "past_history",
        "family_history",
    ]
    assert [s.label_ for s in doc.spans["ehr_sections"]] == [s["name"] for s in doc._.ehr_sections]
    c = concepts_by_text(doc)
    assert c["胸痛"]["negated"] is False and c["大汗"]["category"] == "symptom"
    assert c["发热"]["negated"] and c["咳嗽"]["negated"]  # 无发热、咳嗽
    assert c["高血压"]["negated"] and c["高血压"]["historical"]  # 否认 … in 既往史
    assert c["冠心病"]["family"] and not c["冠心病"]["negated"]
    assert any(cue["rule"] == "否认" for cue in c["高血压"]["cues"])
    # the same flags as the Python API
    api = TextPipeline(tokenize=False).annotate(NOTES[0]).to_dict()["concepts"]
    for got, want in zip(doc._.ehr_concepts, api, strict=True):
        assert {k: got[k] for k in ("start", "end", "negated", "family", "historical")} == {
            k: want[k] for k in ("start", "end", "negated", "family", "historical")
        }
    # span getters
    span = doc.char_span(c["冠心病"]["start"], c["冠心病"]["end"])
    assert span._.ehr_section == "family_history"
    assert span._.ehr_concept["family"] is True
    assert doc[0]._.ehr_section == "chief_complaint"


def test_uncertain_and_offsets_into_the_note(nlp):
    doc = nlp(NOTES[1])
    c = concepts_by_text(doc)
    assert c["肺炎"]["uncertain"] and not c["肺炎"]["negated"]
    assert [s["name"] for s in doc._.ehr_sections] == ["chief_complaint", "present_illness"]
    for s in doc._.ehr_sections:
        assert doc.text[s["header_start"] : s["header_end"]].startswith("【")


def test_deid(nlp):
    doc = nlp(NOTES[2])
    types = [p["type"] for p in doc._.ehr_phi]
    assert {"name", "age", "phone", "date"} <= set(types)
    deid = doc._.ehr_deid
    assert deid["strategy"] == "tag"
    assert "张伟" not in deid["text"] and "13812345678" not in deid["text"]
    assert "[姓名]" in deid["text"]
    assert deid["text"] == Deidentifier().deidentify(NOTES[2]).text
    assert sum(deid["counts"].values()) == len(doc._.ehr_phi)
    # no PHI text in the PHI records themselves, only offsets, types and rule names
    assert "张伟" not in json.dumps(doc._.ehr_phi, ensure_ascii=False)
    assert [s.label_ for s in doc.spans["ehr_phi"]] == types


def test_empty_and_blank_notes(nlp):
    for note in ("", "   ", "\n\n"):
        doc = nlp(note)
        assert doc.text == note
        assert doc._.ehr_concepts == [] and doc._.ehr_phi == []


def test_mask_strategy_keeps_length():
    nlp = ehrtext.load_pipeline(deid_config={"strategy": "mask"})
    doc = nlp(NOTES[2])
    assert len(doc._.ehr_deid["text"]) == len(NOTES[2])
    assert "13812345678" not in doc._.ehr_deid["text"]


def test_surrogate_needs_a_secret_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("EHRTEXT_DEID_SECRET", raising=False)
    with pytest.raises(InputError, match="EHRTEXT_DEID_SECRET"):
        ehrtext.load_pipeline(deid_config={"strategy": "surrogate"})
    monkeypatch.setenv("EHRTEXT_DEID_SECRET", "s3cret-for-tests")
    nlp = ehrtext.load_pipeline(deid_config={"strategy": "surrogate"})
    doc = nlp.make_doc(NOTES[2])
    doc._.ehr_patient_id = "p1"
    for _, proc in nlp.pipeline:
        doc = proc(doc)
    want = Deidentifier(strategy="surrogate", secret="s3cret-for-tests").deidentify(NOTES[2], "p1")
    assert doc._.ehr_deid["text"] == want.text
    nlp.to_disk(tmp_path / "p")
    assert "s3cret" not in "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in (tmp_path / "p").rglob("*")
        if p.is_file()
    )


USER_NOTE = "超声未提示血栓形成。影像学检查：胸片示心肺膈未见异常。患者有长新冠。"


def _customise(nlp) -> None:
    nlp.tokenizer.add_word("左心耳封堵")
    nlp.get_pipe("ehr_sections").add_rule(
        {"name": "imaging", "title": "影像学检查", "variants": ["影像学检查"]}
    )
    nlp.get_pipe("ehr_concepts").add_terms(["长新冠"], "disease")
    nlp.get_pipe("ehr_context").add_rule(
        {"cue": "未提示", "category": "NEGATED_EXISTENCE", "direction": "forward"}
    )
    nlp.get_pipe("ehr_deid").add_name_stopwords(["左心耳封堵"])


def _check_customised(nlp) -> None:
    doc = nlp(USER_NOTE)
    assert "imaging" in [s["name"] for s in doc._.ehr_sections]
    c = concepts_by_text(doc)
    assert c["长新冠"]["source"] == "user"
    assert c["血栓形成"]["negated"]
    assert "左心耳封堵" in [t.text for t in nlp("行左心耳封堵术")]
    assert "左心耳封堵" in nlp.get_pipe("ehr_deid").rules.name_stopwords


def test_user_rules_are_needed_and_survive_save_and_load(nlp, tmp_path):
    # without the user rules the note reads differently
    doc = nlp(USER_NOTE)
    assert "imaging" not in [s["name"] for s in doc._.ehr_sections]
    assert "长新冠" not in concepts_by_text(doc)
    custom = ehrtext.load_pipeline()
    _customise(custom)
    _check_customised(custom)
    custom.to_disk(tmp_path / "p")
    _check_customised(spacy.load(tmp_path / "p"))
    _check_customised(ehrtext.load_pipeline(tmp_path / "p"))
    # and through bytes
    again = ehrtext.load_pipeline()
    again.from_bytes(custom.to_bytes())
    _check_customised(again)


def test_fresh_process_loads_without_importing_ehrtext(tmp_path):
    custom = ehrtext.load_pipeline()
    _customise(custom)
    custom.to_disk(tmp_path / "p")
    expected = doc_key(custom(USER_NOTE))
    script = textwrap.dedent(
        """
        import json, sys
        import spacy
        assert "ehrtext" not in sys.modules
        nlp = spacy.load(sys.argv[1])
        doc = nlp(sys.argv[2])
        print(json.dumps({
            "tokens": [t.text for t in doc],
            "sections": doc._.ehr_sections,
            "concepts": doc._.ehr_concepts,
            "deid": doc._.ehr_deid,
        }, ensure_ascii=False))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "p"), USER_NOTE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["tokens"] == [t[0] for t in expected[1]]
    assert got["sections"] == expected[2]
    assert got["concepts"] == expected[3]
    assert got["deid"] == expected[5]


def test_doc_to_bytes_and_docbin_keep_the_extensions(nlp):
    docs = list(nlp.pipe(NOTES))
    for doc in docs:
        back = Doc(nlp.vocab).from_bytes(doc.to_bytes())
        assert doc_key(back) == doc_key(doc)
    data = DocBin(store_user_data=True, docs=docs).to_bytes()
    back = list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    assert [doc_key(d) for d in back] == [doc_key(d) for d in docs]
    assert any(d._.ehr_concepts for d in back)


def test_pipe_equals_call(nlp):
    assert [doc_key(d) for d in nlp.pipe(NOTES, batch_size=2)] == [doc_key(nlp(t)) for t in NOTES]


@pytest.mark.shared_data
def test_context_in_batches_equals_call(nlp, real_notes):
    # batches big enough for ConText's batch pass (hundreds of concepts), and docs whose
    # concepts were set by hand (reordered, out of range) in the same batch
    notes = real_notes[:100]
    piped = list(nlp.pipe(notes, batch_size=50))
    assert sum(len(d._.ehr_concepts) for d in piped[:50]) > 1000
    assert [doc_key(d) for d in piped] == [doc_key(nlp(t)) for t in notes]

    ctx = nlp.get_pipe("ehr_context")
    upstream = [name for name in nlp.pipe_names if name in ("ehr_sections", "ehr_concepts")]

    def prepared():
        docs = []
        for text in notes[:40]:
            doc = nlp.make_doc(text)
            for name in upstream:
                doc = nlp.get_pipe(name)(doc)
            docs.append(doc)
        docs[3]._.ehr_concepts = docs[3]._.ehr_concepts[::-1]  # any order
        return docs

    def odd():
        docs = prepared()
        docs[5]._.ehr_concepts = [{"start": 2, "end": len(docs[5].text) + 7}]
        return docs

    for make in (prepared, odd):
        one = [doc_key(ctx(d)) for d in make()]
        assert [doc_key(d) for d in ctx.pipe(make(), batch_size=40)] == one
    bad = prepared()
    bad[7]._.ehr_concepts = [{"start": 5, "end": 2}]
    with pytest.raises(InputError, match="not a valid span"):
        for _ in ctx.pipe(bad, batch_size=40):
            pass


@pytest.mark.slow
@pytest.mark.shared_data
def test_n_process_2_gives_the_same_docs(real_notes, tmp_path):
    """In a fresh interpreter: ``n_process=2`` forks the process, and a fork of the pytest
    process (which by now holds threads of other libraries, e.g. jemalloc's) can deadlock in
    the child. A user's process that loads the pipeline and calls ``pipe`` is what we test."""
    notes = real_notes[:40] + NOTES
    (tmp_path / "notes.json").write_text(json.dumps(notes, ensure_ascii=False), encoding="utf-8")
    script = textwrap.dedent(
        """
        import json, sys
        import ehrtext
        from tests.spacy.conftest import doc_key
        notes = json.load(open(sys.argv[1], encoding="utf-8"))
        nlp = ehrtext.load_pipeline()
        one = [doc_key(d) for d in nlp.pipe(notes, n_process=1, batch_size=8)]
        two = [doc_key(d) for d in nlp.pipe(notes, n_process=2, batch_size=8)]
        print(json.dumps({"same": two == one, "n": len(two),
                          "concepts": sum(len(k[3]) for k in one)}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "notes.json")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] == len(notes)
    assert got["same"]
    assert got["concepts"] > 500  # real notes: hundreds of concepts compared


@pytest.mark.shared_data
def test_real_notes_agree_with_the_python_api(nlp, real_notes):
    api = TextPipeline(tokenize=False)
    for note, doc in zip(real_notes[:60], nlp.pipe(real_notes[:60]), strict=True):
        want = api.annotate(note)
        assert [(c["start"], c["end"]) for c in doc._.ehr_concepts] == list(
            zip(want.concepts.starts, want.concepts.ends)
        )
        assert [c["negated"] for c in doc._.ehr_concepts] == [a.negated for a in want.assertions]
        assert [s["name"] for s in doc._.ehr_sections] == [s.name for s in split_sections(note)]
        flags = ("uncertain", "historical", "family", "hypothetical")
        assert [[c[f] for f in flags] for c in doc._.ehr_concepts] == [
            [getattr(a, f) for f in flags] for a in want.assertions
        ]


def test_displacy_html_shows_sections_concepts_and_assertions(nlp):
    doc = nlp(NOTES[0])
    html = render(doc)
    assert "§ past_history" in html and "§ family_history" in html
    assert "disease NEG HIST" in html  # 高血压 in 否认高血压、糖尿病史
    assert "symptom NEG" in html  # 无发热
    assert "disease FAM" in html  # 母亲有冠心病
    assert "ehr_display" not in doc.spans  # render leaves the doc as it was
    with_phi = render(nlp(NOTES[2]), phi=True)
    assert "PHI phone" in with_phi
    # spaCy's own call on a stored span group works too
    html2 = spacy.displacy.render(doc, style="span", options={"spans_key": "ehr_concepts"})
    assert "symptom" in html2


def test_pickle_round_trip_of_a_component(nlp):
    import pickle

    tok = pickle.loads(pickle.dumps(nlp.tokenizer))
    assert [t.text for t in tok("双肺呼吸音粗")] == [t.text for t in nlp.tokenizer("双肺呼吸音粗")]

