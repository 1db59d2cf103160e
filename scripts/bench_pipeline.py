#!/usr/bin/env python
"""Benchmark: the clinical-structure layer on the real EMR notes of ../shared/data.

Systems, timed in the same run on the same notes (CCL2025 records joined with their section
headers, CCKS2017 and CCKS2019 EMR texts), single process:

  (a) ``TextPipeline().pipe`` — normalize + tokenize + sections + concepts + context, every
      result consumed and dropped (streaming); target >= 5 MB/s
  (a2) the same with ``pause_gc=False`` (Python's cyclic GC left running during a batch)
  (t) ``Tokenizer().pipe`` alone (normalize + tokenize + offsets): the share of (a) that is
      tokenization
  (b) ``Deidentifier().deidentify`` per note (tag strategy): the work of ``ehrtext deid``
  (b2) ``ehrtext deid`` itself, as a subprocess on a JSONL file of the notes (``--cli-copies``
      times over, 13 MB by default): the CLI's own figure (rules, reading, de-identification,
      writing: ``seconds`` and ``cpu_seconds`` of its audit file) and the whole command
      (interpreter start and imports included); target >= 10 MB/s
  (c) spaCy ``zh`` with the jieba segmenter, tokenizer only (``nlp.make_doc``), for scale
  (d) ``ehrtext.load_pipeline()``'s ``nlp.pipe``: the same work as (a) as spaCy components
      (ehrtext tokenizer, ehr_sections, ehr_concepts, ehr_context, and ehr_deid besides),
      Docs with their extensions and span groups
  (a0) with ``--baseline DIR``: (a) as built from the text layer of another checkout
      (``DIR/ehrtext/text/{tokenize,pipeline,sections,concepts,context}.py``, e.g. the last commit
      exported with ``git archive``), so that before and after are timed in the same run;
      the outputs of (a0) and (a) are checked equal on every note first

Each repeat runs every system once, in a rotated order (the machine is shared: a burst of
load then hits every system alike). Figures are medians over the repeats of MB/s by wall
clock and by CPU time of this process (``time.process_time``; for the subprocess, the child's
user + system time), MB = 10^6 bytes of UTF-8 note text. CPU-time rates move far less than
wall-clock rates when other work shares the cores.

Then the CPU time of each stage of (a) (and of (a0)) on the same batches: normalize, tokenize,
sections, concepts, context (``--no-stages`` leaves it out).

Then linearity: pathological inputs (digits, punctuation marks, and real notes joined into one
long note) at two sizes, through (a) and (b); the time ratio should be about 2 for 2x the text.

    python scripts/bench_pipeline.py                        # ~4 min on 2 busy cores
    python scripts/bench_pipeline.py --repeats 3 --skip-spacy --out /tmp/bench_pipeline.json
    mkdir -p /tmp/base && git archive HEAD ehrtext | tar -x -C /tmp/base
    python scripts/bench_pipeline.py --skip-cli --skip-spacy --baseline /tmp/base

The notes stay in ../shared/data; only figures are written (JSON, default
``bench_out/bench_pipeline.json``; the JSONL given to ``ehrtext deid`` lives in a temporary
folder that is removed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_corpus import emr_notes, shared_data  # noqa: E402

TARGETS = {"a_pipeline": 5.0, "b2_deid_cli_run": 10.0}


def _mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _summary(wall: list[float], cpu: list[float], mb: float) -> dict:
    return {
        "median_mb_s_wall": mb / statistics.median(wall),
        "median_mb_s_cpu": mb / statistics.median(cpu),
        "runs_s_wall": [round(x, 4) for x in wall],
        "runs_s_cpu": [round(x, 4) for x in cpu],
    }


def _baseline_pipeline(root: Path) -> object:
    """``TextPipeline()`` built from the text layer under ``root/ehrtext/text`` (the stages
    whose speed this benchmark follows; normalization is this checkout's)."""
    mods = {}
    for name in ("tokenize", "sections", "concepts", "context", "pipeline"):
        path = root / "ehrtext" / "text" / f"{name}.py"
        if not path.is_file():
            raise SystemExit(f"--baseline: {path} is missing")
        spec = importlib.util.spec_from_file_location(f"_baseline_{name}", path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = mod  # type: ignore[union-attr]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        mods[name] = mod
    return mods["pipeline"].TextPipeline(
        mods["tokenize"].Tokenizer(),
        mods["sections"].Sectionizer(),
        mods["concepts"].ConceptMatcher(),
        mods["context"].ConText(),
    )


def _same_annotations(a: object, b: object) -> bool:
    """Two pipelines' results on one note are equal (sections compared as dicts: the classes
    differ between checkouts)."""
    return (
        [s.to_dict() for s in a.sections] == [s.to_dict() for s in b.sections]  # type: ignore[attr-defined]
        and list(a.concepts) == list(b.concepts)  # type: ignore[attr-defined]
        and a.assertions == b.assertions  # type: ignore[attr-defined]
        and a.tokens.to_list() == b.tokens.to_list()  # type: ignore[attr-defined]
    )


STAGES = ("normalize", "tokenize", "sections", "concepts", "context")


def _stage_times(pipeline: object, notes: list[str], repeats: int) -> dict[str, float]:
    """Median CPU seconds of each stage of ``pipeline`` (a ``TextPipeline``, this checkout's or
    the baseline's) over ``notes`` in batches of 256, the collector paused as in ``pipe``:
    what its ``_run_batch`` does, one stage at a time (the context stage is the batch pass
    where the pipeline has one, else the note-by-note sweep)."""
    import gc

    from ehrtext.text.normalize import normalize_many
    from ehrtext.text.pipeline import _tokens_of

    p: Any = pipeline
    ctx = p.context
    batches = [notes[i : i + 256] for i in range(0, len(notes), 256)]

    def context(normed: list, concepts: list, sections: list) -> object:
        if hasattr(ctx, "_apply_many"):
            return ctx._apply_many(normed, [(c.starts, c.ends) for c in concepts], sections)
        return [
            ctx._sweep(n, c.starts, c.ends, s, None) if c.starts else []
            for n, c, s in zip(normed, concepts, sections, strict=True)
        ]

    runs: dict[str, list[float]] = {k: [] for k in STAGES}
    for _ in range(repeats):
        spent = dict.fromkeys(STAGES, 0.0)
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for texts in batches:
                c0 = time.process_time()
                normed = normalize_many(texts, p.normalizer)
                c1 = time.process_time()
                list(_tokens_of(p.tokenizer, texts, normed))
                c2 = time.process_time()
                sections = [p.sectionizer(n) for n in normed]
                c3 = time.process_time()
                concepts = list(p.concepts.pipe(normed))
                c4 = time.process_time()
                context(normed, concepts, sections)
                c5 = time.process_time()
                for k, a, b in zip(STAGES, (c0, c1, c2, c3, c4), (c1, c2, c3, c4, c5), strict=True):
                    spent[k] += b - a
        finally:
            if was_enabled:
                gc.enable()
        for k in STAGES:
            runs[k].append(spent[k])
    return {k: statistics.median(v) for k, v in runs.items()}


def _linear(fn: Callable[[str], object], small: str, repeats: int) -> dict:
    """Median time of ``fn`` on ``small`` and on ``small`` twice over."""
    big = small + small
    fn(small)  # warm caches
    ts, tb = [], []
    for _ in range(repeats):
        ts.append(_timed(lambda: fn(small))[1])
        tb.append(_timed(lambda: fn(big))[1])
    s, b = statistics.median(ts), statistics.median(tb)
    return {
        "chars": [len(small), len(big)],
        "cpu_s": [round(s, 5), round(b, 5)],
        "ratio_2x": round(b / s, 3) if s > 0 else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per system (default 5)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/bench_pipeline.json"))
    parser.add_argument("--skip-spacy", action="store_true", help="leave out (c) and (d)")
    parser.add_argument("--skip-cli", action="store_true", help="leave out (b2)")
    parser.add_argument(
        "--cli-copies",
        type=int,
        default=3,
        help="(b2) reads a file of the notes repeated this many times, so that loading the "
        "rules (~0.2 s) weighs as in a real run (default 3)",
    )
    parser.add_argument(
        "--no-stages",
        dest="stages",
        action="store_false",
        help="leave out the CPU time of each stage of (a) (and of (a0))",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="also time (a0): the pipeline of the text layer under DIR/ehrtext/text (another "
        "checkout), after checking its outputs equal (a)'s on every note",
    )
    parser.add_argument(
        "--patho-chars",
        type=int,
        default=50_000,
        help="smaller size of the pathological inputs (the larger is twice it; default 50000)",
    )
    args = parser.parse_args(argv)

    from ehrtext import __version__
    from ehrtext.text import Tokenizer
    from ehrtext.text.deid import Deidentifier
    from ehrtext.text.pipeline import TextPipeline

    notes = list(emr_notes(shared_data()))
    mb = _mb(notes)
    load = os.getloadavg()
    print(
        f"corpus: {len(notes):,} EMR notes (CCL2025, CCKS2017, CCKS2019), {mb:.2f} MB; "
        f"{os.cpu_count()} CPUs, load {load[0]:.1f}"
    )

    start = time.perf_counter()
    pipeline = TextPipeline()
    for _ in pipeline.pipe(notes[:20]):
        pass
    pipeline_gc = TextPipeline(pause_gc=False)
    for _ in pipeline_gc.pipe(notes[:20]):
        pass
    tokenizer = Tokenizer()
    list(tokenizer.pipe(notes[:20]))
    deid = Deidentifier()
    deid.deidentify(notes[0])
    baseline = None
    differ = None
    if args.baseline is not None:
        baseline = _baseline_pipeline(args.baseline)
        differ = sum(
            not _same_annotations(x, y)
            for x, y in zip(baseline.pipe(notes), pipeline.pipe(notes), strict=True)  # type: ignore[attr-defined]
        )
        print(f"baseline {args.baseline}: outputs differ on {differ} of {len(notes):,} notes")
    print(f"built pipeline, tokenizer and deidentifier in {time.perf_counter() - start:.1f} s")

    def run_pipeline() -> None:
        n = 0
        for a in pipeline.pipe(notes, batch_size=256):
            n += len(a.assertions)  # consume, keep nothing

    def run_pipeline_gc() -> None:
        n = 0
        for a in pipeline_gc.pipe(notes, batch_size=256):
            n += len(a.assertions)

    def run_tokenizer() -> None:
        for toks in tokenizer.pipe(notes, batch_size=256):
            toks.starts  # noqa: B018 - offsets are part of the work

    def run_deid() -> None:
        for note in notes:
            deid.deidentify(note).text  # noqa: B018

    systems: dict[str, Callable[[], None]] = {
        "a_pipeline": run_pipeline,
        "a2_pipeline_gc_running": run_pipeline_gc,
        "t_tokenizer": run_tokenizer,
        "b_deid_api": run_deid,
    }
    if baseline is not None:

        def run_baseline() -> None:
            n = 0
            for a in baseline.pipe(notes, batch_size=256):  # type: ignore[attr-defined]
                n += len(a.assertions)

        systems["a0_pipeline_baseline"] = run_baseline
    if not args.skip_spacy:
        import spacy

        nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
        nlp.make_doc("预热")

        def run_spacy() -> None:
            make_doc = nlp.make_doc
            for note in notes:
                make_doc(note)

        systems["c_spacy_zh_jieba_tokenizer"] = run_spacy

        import ehrtext

        nlp_ehr = ehrtext.load_pipeline()
        list(nlp_ehr.pipe(notes[:20]))

        def run_spacy_pipeline() -> None:
            n = 0
            for doc in nlp_ehr.pipe(notes, batch_size=256):
                n += len(doc._.ehr_concepts)

        systems["d_spacy_ehrtext_pipeline"] = run_spacy_pipeline

    tmp = tempfile.TemporaryDirectory(prefix="ehrtext_bench_")
    cli_in = Path(tmp.name) / "notes.jsonl"
    if not args.skip_cli:
        with open(cli_in, "w", encoding="utf-8") as fh:
            for copy in range(args.cli_copies):
                for i, note in enumerate(notes):
                    row = {"id": f"{copy}-{i}", "text": note}
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    cli_mb = mb * args.cli_copies
    cli_runs: dict[str, list[float]] = {"run": [], "run_cpu": [], "wall": [], "cpu": []}

    def run_cli() -> None:
        out = Path(tmp.name) / "deid.jsonl"
        audit = Path(tmp.name) / "deid.audit.json"
        exe = [sys.executable, "-m", "ehrtext.cli"]
        c0, w0 = _children_cpu(), time.perf_counter()
        subprocess.run(
            [*exe, "deid", str(cli_in), "-o", str(out), "--audit", str(audit), "--no-progress"],
            check=True,
            capture_output=True,
        )
        cli_runs["wall"].append(time.perf_counter() - w0)
        cli_runs["cpu"].append(_children_cpu() - c0)
        record = json.loads(audit.read_text(encoding="utf-8"))
        cli_runs["run"].append(record["seconds"])
        cli_runs["run_cpu"].append(record["cpu_seconds"])

    wall: dict[str, list[float]] = {k: [] for k in systems}
    cpu: dict[str, list[float]] = {k: [] for k in systems}
    names = list(systems)
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            w, c = _timed(systems[name])
            wall[name].append(w)
            cpu[name].append(c)
        if not args.skip_cli:
            run_cli()
        print(
            f"  repeat {r + 1}/{args.repeats}: "
            + ", ".join(f"{k} {mb / wall[k][-1]:.2f}" for k in names)
            + " MB/s (wall)"
        )
    results = {k: _summary(wall[k], cpu[k], mb) for k in names}
    if not args.skip_cli:
        results["b2_deid_cli_run"] = {
            **_summary(cli_runs["run"], cli_runs["run_cpu"], cli_mb),
            "mb": round(cli_mb, 4),
            "what": "ehrtext deid's own timing (rules, read, de-identify, write), from its "
            "audit file",
        }
        results["b2_deid_cli_whole_command"] = {
            **_summary(cli_runs["wall"], cli_runs["cpu"], cli_mb),
            "mb": round(cli_mb, 4),
            "what": "the whole subprocess: interpreter start, imports, rules, the run",
        }
    tmp.cleanup()

    print(f"\n{'system':32s}{'MB/s wall':>11s}{'MB/s CPU':>11s}   target")
    for k, v in results.items():
        target = TARGETS.get(k)
        mark = (
            ""
            if target is None
            else (
                f">= {target:g} " + ("met" if v["median_mb_s_wall"] >= target else "not met (wall)")
            )
        )
        cpu_rate = v.get("median_mb_s_cpu")
        cpu_s = f"{cpu_rate:11.2f}" if cpu_rate is not None else f"{'-':>11s}"
        print(f"{k:32s}{v['median_mb_s_wall']:11.2f}{cpu_s}   {mark}")

    ratios: dict[str, float] = {}
    rate = {k: v["median_mb_s_cpu"] for k, v in results.items() if "median_mb_s_cpu" in v}
    if "c_spacy_zh_jieba_tokenizer" in rate:
        base = rate["c_spacy_zh_jieba_tokenizer"]
        ratios["a_pipeline_over_c_spacy_tokenizer"] = rate["a_pipeline"] / base
        ratios["b_deid_over_c_spacy_tokenizer"] = rate["b_deid_api"] / base
        ratios["t_tokenizer_over_c_spacy_tokenizer"] = rate["t_tokenizer"] / base
    ratios["a_pipeline_over_t_tokenizer"] = rate["a_pipeline"] / rate["t_tokenizer"]
    if "a0_pipeline_baseline" in rate:
        ratios["a_pipeline_over_a0_baseline"] = rate["a_pipeline"] / rate["a0_pipeline_baseline"]
        wall = {k: v["median_mb_s_wall"] for k, v in results.items()}
        ratios["a_pipeline_over_a0_baseline_wall"] = (
            wall["a_pipeline"] / wall["a0_pipeline_baseline"]
        )
    ratios["a_pipeline_over_a2_gc_running"] = rate["a_pipeline"] / rate["a2_pipeline_gc_running"]
    print("ratios (CPU-time MB/s):")
    for k, v in ratios.items():
        print(f"  {k:40s}{v:7.2f}x")

    # ---- stages ---------------------------------------------------------------------------
    stages: dict[str, dict[str, float]] = {}
    if args.stages:
        labelled = [("a_pipeline", pipeline)]
        if baseline is not None:
            labelled.append(("a0_pipeline_baseline", baseline))
        for label, p in labelled:
            stages[label] = {
                k: round(v, 4) for k, v in _stage_times(p, notes, args.repeats).items()
            }
        print(f"\nstages, CPU seconds (median of {args.repeats}; MB/s of the stage alone):")
        for k in STAGES:
            line = f"  {k:10s}"
            for label in stages:
                sec = stages[label][k]
                line += f"  {label} {sec:.3f}s ({mb / sec:6.1f} MB/s)"
            print(line)

    # ---- linearity ----------------------------------------------------------------------
    n = args.patho_chars
    long_note = "\n".join(notes)[:n]
    inputs = {
        "digits": ("1234567890" * (n // 10 + 1))[:n],
        "punctuation": ("，。！？；：、（）…—" * (n // 11 + 1))[:n],
        "real_notes_joined": long_note,
    }

    def annotate(text: str) -> None:
        pipeline.annotate(text)

    patho: dict[str, dict] = {}
    print(f"\nlinearity ({n:,} vs {2 * n:,} chars; CPU time, median of 3):")
    for label, text in inputs.items():
        patho[label] = {
            "a_pipeline": _linear(annotate, text, 3),
            "b_deid": _linear(deid.deidentify, text, 3),
        }
        for sysname, v in patho[label].items():
            print(
                f"  {label:18s} {sysname:11s} {v['cpu_s'][0]:.4f}s -> {v['cpu_s'][1]:.4f}s "
                f"ratio {v['ratio_2x']:.2f}"
            )

    report = {
        "benchmark": "pipeline",
        "ehrtext_version": __version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "load_average_start": load,
        "load_average_end": os.getloadavg(),
        "corpus": {"notes": len(notes), "mb": round(mb, 4), "repeats": args.repeats},
        "results": results,
        "ratios": ratios,
        "targets_mb_s": TARGETS,
        "stages_cpu_s": stages,
        "linearity": patho,
        "baseline": None
        if args.baseline is None
        else {
            "path": str(args.baseline),
            "notes_differing": differ,
        },
        "command": "python scripts/bench_pipeline.py " + " ".join(argv or sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
