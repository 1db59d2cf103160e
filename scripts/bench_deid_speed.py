"""Benchmark: ``ehrtext deid`` speed, this checkout against a baseline revision, in one run.

Both trees are copies of this checkout's ``ehrtext`` package in a temporary folder; in the
baseline ``ehrtext/text/deid.py`` and ``ehrtext/cli.py`` come from ``--base-rev`` (``git show``,
which changes nothing in the checkout). Both read the same ``corpora/`` and cache their byte
code in the temporary folder (one warm-up run each), as an installed package would. Rounds
alternate baseline and new, so that a busy machine slows both alike:

* CLI: ``ehrtext deid INPUT -o OUT --audit AUDIT --no-progress`` in a fresh process; CPU time of
  the whole process (``process_cpu``: user + sys from ``getrusage``, start-up and imports
  included), of ``ehrtext.cli.main()`` (``main_cpu``: the scope of a cProfile of the CLI) and
  the audit's ``cpu_seconds`` and ``seconds`` (rules loaded, file read, de-identified, written);
* API: ``Deidentifier().deidentify`` over the notes of INPUT in one process, CPU seconds and
  MB/s (MB = 10^6 bytes of UTF-8), rules loaded before the clock starts.

Medians of ``--rounds`` runs and new/base ratios are printed and written to ``--out`` (JSON).
The outputs of the last CLI runs (JSONL and audit counts) must be byte-identical: the script
says whether they are. INPUT defaults to /tmp/deid_in.jsonl, written when absent from the real
EMR notes of ../shared/data (three copies of each, 13.5 MB).

    .venv/bin/python scripts/bench_deid_speed.py                     # 5 rounds, ~1 min
    .venv/bin/python scripts/bench_deid_speed.py --rounds 3 --out /tmp/deid_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

_API = """
import json, sys, time
from ehrtext.text.deid import Deidentifier
texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
d = Deidentifier()
d.deidentify("预热")
t0 = time.process_time()
for t in texts:
    d.deidentify(t)
cpu = time.process_time() - t0
print(json.dumps({"cpu": cpu, "mb": sum(len(t.encode("utf-8")) for t in texts) / 1e6}))
"""

_CLI = """
import atexit, sys, time
from ehrtext.cli import main
t0 = time.process_time()
atexit.register(lambda: print(f"MAIN_CPU {time.process_time() - t0:.6f}", file=sys.stderr))
sys.argv[0] = "ehrtext"
main()
"""


_no_cache = shutil.ignore_patterns("__pycache__")


def make_input(path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from shared_corpus import emr_notes, shared_data

    notes = list(emr_notes(shared_data()))
    with open(path, "w", encoding="utf-8") as fh:
        for c in range(3):
            for i, n in enumerate(notes):
                fh.write(json.dumps({"id": f"{c}-{i}", "text": n}, ensure_ascii=False) + "\n")


def make_baseline(rev: str, where: Path) -> Path:
    tree = where / "base"
    shutil.copytree(REPO / "ehrtext", tree / "ehrtext", ignore=_no_cache)
    for rel in ("ehrtext/text/deid.py", "ehrtext/cli.py"):
        src = subprocess.run(
            ["git", "show", f"{rev}:{rel}"], cwd=REPO, check=True, capture_output=True
        ).stdout
        (tree / rel).write_bytes(src)
    (tree / "corpora").symlink_to(REPO / "corpora")
    return tree


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    # Byte code cached (outside the checkout) as in an installed package, even where
    # PYTHONDONTWRITEBYTECODE is set: otherwise every run compiles the sources again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tree.parent / "pycache" / tree.name)
    return env


def run_cli(tree: Path, inp: Path, out: Path, audit: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run(
        [PY, "-c", _CLI, "deid", str(inp), "-o", str(out), "--audit", str(audit), "--no-progress"],
        env=_env(tree),
        cwd=tempfile.gettempdir(),
        check=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    a = json.loads(audit.read_text(encoding="utf-8"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    main_cpu = float(res.stderr.rsplit("MAIN_CPU ", 1)[1].split()[0])
    return {
        "process_cpu": cpu,
        "main_cpu": main_cpu,
        "audit_cpu": a["cpu_seconds"],
        "audit_seconds": a["seconds"],
    }


def run_api(tree: Path, inp: Path) -> dict[str, float]:
    res = subprocess.run(
        [PY, "-c", _API, str(inp)],
        env=_env(tree),
        cwd=tempfile.gettempdir(),
        check=True,
        capture_output=True,
        text=True,
    )
    r = json.loads(res.stdout)
    return {"api_cpu": r["cpu"], "api_mb_per_cpu_s": r["mb"] / r["cpu"]}


def stable_audit(path: Path) -> dict:
    a = json.loads(path.read_text(encoding="utf-8"))
    for k in ("created", "seconds", "mb_per_s", "cpu_seconds", "output", "input"):
        a.pop(k, None)
    return a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, default=Path("/tmp/deid_in.jsonl"))
    ap.add_argument("--base-rev", default="HEAD")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_deid_speed.json"))
    args = ap.parse_args()
    if not args.input.is_file():
        make_input(args.input)
    with tempfile.TemporaryDirectory(prefix="bench_deid_") as tmp:
        work = Path(tmp)
        trees = {"base": make_baseline(args.base_rev, work), "new": work / "new"}
        shutil.copytree(REPO / "ehrtext", work / "new" / "ehrtext", ignore=_no_cache)
        (work / "new" / "corpora").symlink_to(REPO / "corpora")
        runs: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
        for name, tree in trees.items():  # warm-up: byte code and file cache
            run_cli(tree, args.input, work / f"{name}.jsonl", work / f"{name}.audit.json")
        for _ in range(args.rounds):
            for name, tree in trees.items():
                r = run_cli(tree, args.input, work / f"{name}.jsonl", work / f"{name}.audit.json")
                r.update(run_api(tree, args.input))
                runs[name].append(r)
        identical = (work / "base.jsonl").read_bytes() == (work / "new.jsonl").read_bytes()
        identical &= stable_audit(work / "base.audit.json") == stable_audit(work / "new.audit.json")
    mb = args.input.stat().st_size / 1e6
    keys = ("process_cpu", "main_cpu", "audit_cpu", "audit_seconds", "api_cpu", "api_mb_per_cpu_s")
    med = {n: {k: statistics.median(r[k] for r in rs) for k in keys} for n, rs in runs.items()}
    report = {
        "input": str(args.input),
        "input_mb": round(mb, 3),
        "base_rev": args.base_rev,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "note": "shared machine: other processes ran too; base and new alternate in one run",
        "median": med,
        "ratio_new_over_base": {k: med["new"][k] / med["base"][k] for k in keys},
        "outputs_identical": identical,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"input {mb:.1f} MB, {args.rounds} rounds (medians; CPU seconds)")
    print(f"{'':18s}{'base':>10s}{'new':>10s}{'new/base':>10s}")
    for k in keys:
        b, n = med["base"][k], med["new"][k]
        print(f"{k:18s}{b:10.3f}{n:10.3f}{n / b:10.3f}")
    print(f"outputs byte-identical: {identical}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
