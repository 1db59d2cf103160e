"""The model directory: one format for every face (Python API, CLI, spaCy, batch scoring).

::

    model/
      ehrtext.json         format version, ehrtext/torch versions, kind, task spec, labels,
                           thresholds, temperature, tokenizer settings + dictionary hash, seed,
                           model hyper-parameters, and the size + SHA-256 of every file below
      vocab.txt            one token a line, index = line number (text models)
      weights.safetensors  every tensor / array of the model (no pickle anywhere)
      metrics.json         held-out results and the split they come from
      README.md            a generated model card

:func:`save_bundle` writes the files into a temporary sibling folder and renames it into
place, so a crash never leaves a half-written model directory. :func:`load_bundle` checks,
before anything is parsed, that ``ehrtext.json`` is readable and not of a newer format, that
every listed file is present, has the recorded size (truncation) and SHA-256 (tampering), and
raises :class:`~ehrtext.errors.ModelFileError` naming the file and the fix otherwise. The model
card ``README.md`` is documentation: its hash is recorded but a user may edit it.

Kinds: ``ehrtext.json["kind"]`` names the builder that turns a loaded :class:`Bundle` into a
model (``linear``, ``bigru``, ``bilstm`` in :mod:`ehrtext.predict`; ``image`` and
``multimodal`` are registered by the imaging code with :func:`register_kind`).

Example:
    >>> import numpy as np
    >>> save_bundle(tmp / "m", config={"kind": "linear", "task": "binary", "labels": ["no",
    ...     "yes"]}, tensors={"coef": np.ones((1, 3), np.float32)})       # doctest: +SKIP
    >>> load_bundle(tmp / "m").tensors["coef"].shape                     # doctest: +SKIP
    (1, 3)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext._version import __version__
from ehrtext.errors import InputError, ModelFileError

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "KINDS",
    "Bundle",
    "build_from_bundle",
    "load_bundle",
    "read_config",
    "register_kind",
    "save_bundle",
]

#: Version of the model directory layout; a directory of a newer version is refused.
FORMAT_VERSION = 1
CONFIG_FILE = "ehrtext.json"
WEIGHTS_FILE = "weights.safetensors"
VOCAB_FILE = "vocab.txt"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
#: Files whose hash is recorded but not enforced (documentation a user may edit).
_UNVERIFIED = {CARD_FILE}

#: Known kinds -> "module:function" building a model from a :class:`Bundle` (imported lazily).
KINDS: dict[str, str] = {
    "linear": "ehrtext.predict:build_linear",
    "bigru": "ehrtext.predict:build_rnn",
    "bilstm": "ehrtext.predict:build_rnn",
    "image": "ehrtext.imaging.model:build_from_bundle",
    "multimodal": "ehrtext.multimodal:build_from_bundle",
}
_BUILDERS: dict[str, Callable[[Bundle], Any]] = {}


def register_kind(kind: str, builder: Callable[[Bundle], Any] | str) -> None:
    """Register how a model of ``kind`` is built from a loaded :class:`Bundle`.

    ``builder`` is a function ``(bundle) -> model`` or a ``"module:function"`` string imported
    on first use (so registering costs no import).

    Example:
        >>> register_kind("image", "ehrtext.imaging.model:build_from_bundle")  # doctest: +SKIP
    """
    if not isinstance(kind, str) or not kind:
        raise InputError("kind must be a non-empty string")
    if isinstance(builder, str):
        KINDS[kind] = builder
        _BUILDERS.pop(kind, None)
    elif callable(builder):
        _BUILDERS[kind] = builder
    else:
        raise InputError("builder must be a callable or a 'module:function' string")


def _builder(kind: str) -> Callable[[Bundle], Any]:
    if kind in _BUILDERS:
        return _BUILDERS[kind]
    target = KINDS.get(kind)
    if target is None:
        known = ", ".join(sorted(set(KINDS) | set(_BUILDERS)))
        raise ModelFileError(f"unknown model kind {kind!r} (known: {known}): upgrade ehrtext?")
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    _BUILDERS[kind] = fn
    return fn


@dataclass
class Bundle:
    """A loaded and verified model directory.

    Attributes:
        config: the contents of ``ehrtext.json``.
        tensors: name -> numpy array (from ``weights.safetensors``).
        vocab: the tokens of ``vocab.txt`` (None when the directory has none).
        metrics: the contents of ``metrics.json`` (None when absent).
        path: the directory.

    Example:
        >>> b = load_bundle("model/")                                  # doctest: +SKIP
        >>> b.kind, b.config["labels"]                                 # doctest: +SKIP
        ('bigru', ['冠心病', '心力衰竭'])
    """

    config: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(repr=False)
    vocab: list[str] | None = field(default=None, repr=False)
    metrics: dict[str, Any] | None = field(default=None, repr=False)
    path: Path | None = None

    @property
    def kind(self) -> str:
        """The model kind (``linear``, ``bigru``, ``bilstm``, ``image``, ``multimodal``)."""
        return str(self.config.get("kind"))

    def build(self) -> Any:
        """The model, built by the builder registered for :attr:`kind`."""
        return build_from_bundle(self)


def build_from_bundle(bundle: Bundle) -> Any:
    """Build the model of a loaded bundle with the builder registered for its kind.

    Example:
        >>> model = build_from_bundle(load_bundle("model/"))           # doctest: +SKIP
    """
    return _builder(bundle.kind)(bundle)


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().to("cpu").contiguous().numpy()
    arr = np.ascontiguousarray(np.asarray(value))
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise InputError(f"tensor {name!r} has dtype {arr.dtype}: only numeric arrays are saved")
    return arr


def _versions() -> dict[str, str]:
    out = {"ehrtext": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "sklearn", "safetensors"):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception:  # noqa: BLE001 - an optional package that is absent or broken
            pass
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default) + "\n"


def save_bundle(
    directory: str | os.PathLike[str],
    *,
    config: Mapping[str, Any],
    tensors: Mapping[str, Any],
    vocab: Sequence[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    card: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a model directory (atomically) and return its path.

    Args:
        directory: where the model goes (replaced when it exists and ``overwrite``).
        config: at least ``kind``; usually also ``task``, ``spec`` (``TaskSpec.to_dict()``),
            ``labels``, ``thresholds``, ``temperature``, ``tokenizer`` (``Tokenizer.config``),
            ``dictionary_hash``, ``seed`` and ``model`` (hyper-parameters). ``format_version``,
            ``versions``, ``created`` and ``files`` are added here.
        tensors: name -> torch tensor or numpy array, saved in ``weights.safetensors``.
        vocab: the vocabulary, saved as ``vocab.txt`` (a token may not contain a newline).
        metrics: saved as ``metrics.json``.
        card: the model card; by default one is generated from config and metrics.

    Example:
        >>> save_bundle("model/", config={"kind": "bigru", "task": "multiclass", "labels":
        ...     ["a", "b"]}, tensors=model.state_dict(), vocab=vocab.itos)  # doctest: +SKIP
    """
    from safetensors.numpy import save_file

    cfg = dict(config)
    if not cfg.get("kind"):
        raise InputError("config must name the model 'kind'")
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a directory")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InputError(f"{target} exists and is not empty (pass overwrite=True)")
    if target.exists() and any(target.iterdir()) and not (target / CONFIG_FILE).exists():
        raise InputError(
            f"{target} is a non-empty directory that is not a model directory: refusing to "
            "replace it; choose another --output"
        )
    arrays = {str(k): _to_numpy(str(k), v) for k, v in tensors.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(arrays, str(tmp / WEIGHTS_FILE), metadata={"format": "ehrtext"})
        if vocab is not None:
            bad = [i for i, tok in enumerate(vocab) if not isinstance(tok, str) or "\n" in tok]
            if bad:
                raise InputError(f"vocab entry {bad[0]} is not a single-line string")
            (tmp / VOCAB_FILE).write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(_dump_json(dict(metrics)), encoding="utf-8")
        cfg.update(
            format_version=FORMAT_VERSION,
            versions=_versions(),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        text = card if card is not None else model_card(cfg, metrics)
        (tmp / CARD_FILE).write_text(text, encoding="utf-8")
        cfg["files"] = {
            p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())
        }
        (tmp / CONFIG_FILE).write_text(_dump_json(cfg), encoding="utf-8")
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``ehrtext.json`` of a model directory, after checking its format version (files are not
    verified: use :func:`load_bundle` for that).

    Example:
        >>> read_config("model/")["kind"]                              # doctest: +SKIP
        'bigru'
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: no such model directory")
    path = folder / CONFIG_FILE
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(
            f"{path} is missing: {folder} is not an ehrtext model directory (or is incomplete)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc}): the file is damaged") from None
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{path} is not a JSON object: the file is damaged")
    version = cfg.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path} has no integer 'format_version': not an ehrtext model")
    if version > FORMAT_VERSION:
        made_by = cfg.get("versions", {}).get("ehrtext", "a newer ehrtext")
        raise ModelFileError(
            f"{folder} has model format {version}, newer than this ehrtext supports "
            f"({FORMAT_VERSION}); it was written by ehrtext {made_by}: upgrade ehrtext "
            f"(this is {__version__})"
        )
    if not isinstance(cfg.get("files"), dict) or not cfg.get("kind"):
        raise ModelFileError(f"{path} lacks 'files' or 'kind': the file is damaged")
    return cfg


def verify_files(directory: str | os.PathLike[str], cfg: Mapping[str, Any]) -> None:
    """Check that every file listed in ``cfg["files"]`` is present, whole and unchanged.

    Raises:
        ModelFileError: naming the first missing, truncated or modified file.
    """
    folder = Path(directory)
    for name, meta in cfg["files"].items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ModelFileError(f"{folder / CONFIG_FILE}: invalid file name {name!r}")
        path = folder / name
        if not path.is_file():
            if name in _UNVERIFIED:
                continue
            raise ModelFileError(
                f"{path} is missing: the model directory is incomplete (copy it again)"
            )
        if name in _UNVERIFIED:
            continue
        size = path.stat().st_size
        if size != meta.get("bytes"):
            what = "truncated" if size < meta.get("bytes", 0) else "larger than recorded"
            raise ModelFileError(
                f"{path} is {what}: {size} bytes, expected {meta.get('bytes')} "
                "(an interrupted copy?): copy the model directory again"
            )
        if _sha256(path) != meta.get("sha256"):
            raise ModelFileError(
                f"{path} does not match its SHA-256 in {CONFIG_FILE}: the file was modified "
                "or corrupted; do not use it (copy the model directory again)"
            )


def load_bundle(directory: str | os.PathLike[str], *, verify: bool = True) -> Bundle:
    """Load and verify a model directory (nothing is unpickled).

    Raises:
        ModelFileError: missing directory or file, damaged ``ehrtext.json``, a newer format,
            a truncated or modified file; the message names the file and the fix.

    Example:
        >>> bundle = load_bundle("model/")                              # doctest: +SKIP
        >>> sorted(bundle.tensors)[:2]                                  # doctest: +SKIP
        ['embedding.weight', 'head.bias']
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(directory)
    cfg = read_config(folder)
    if verify:
        verify_files(folder, cfg)
    files = cfg["files"]
    tensors: dict[str, np.ndarray] = {}
    if WEIGHTS_FILE in files:
        try:
            tensors = load_file(str(folder / WEIGHTS_FILE))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFileError(f"{folder / WEIGHTS_FILE} cannot be read: {exc}") from None
    vocab = None
    if VOCAB_FILE in files:
        text = (folder / VOCAB_FILE).read_text(encoding="utf-8")
        vocab = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    metrics = None
    if METRICS_FILE in files:
        try:
            metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{folder / METRICS_FILE} is not valid JSON: {exc}") from None
    return Bundle(config=cfg, tensors=tensors, vocab=vocab, metrics=metrics, path=folder)


# --------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict) and "value" in value:
        return _fmt(value["value"])
    return str(value)


def model_card(config: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> str:
    """A markdown model card generated from ``ehrtext.json`` and ``metrics.json``.

    Example:
        >>> print(model_card({"kind": "bigru", "task": "binary", "labels": ["no", "yes"]}))
        ... # doctest: +ELLIPSIS
        # ehrtext model: bigru (binary)
        ...
    """
    kind = config.get("kind")
    task = config.get("task") or (config.get("spec") or {}).get("task")
    labels = list(config.get("labels") or [])
    lines = [f"# ehrtext model: {kind} ({task})", ""]
    lines += [
        "Generated by ehrtext when the model was saved. Load it with",
        "",
        "```python",
        "import ehrtext",
        'model = ehrtext.RiskModel.load("path/to/this/folder")',
        'model.predict(["主诉：胸痛3天。"])',
        "```",
        "",
        "## Model",
        "",
        f"- kind: `{kind}`; task: `{task}`; {len(labels)} labels",
    ]
    spec = config.get("spec") or {}
    if spec.get("text_fields"):
        lines.append(f"- text fields: {', '.join(f'`{f}`' for f in spec['text_fields'])}")
    if config.get("model"):
        params = ", ".join(f"{k}={v}" for k, v in config["model"].items() if k != "vocab_size")
        lines.append(f"- architecture: {params}")
    if config.get("embeddings"):
        lines.append(f"- embeddings: {config['embeddings']}")
    if "temperature" in config:
        lines.append(f"- calibration temperature: {_fmt(config['temperature'])}")
    if config.get("seed") is not None:
        lines.append(f"- seed: {config['seed']}")
    if config.get("dictionary_hash"):
        lines.append(f"- tokenizer dictionary hash: `{str(config['dictionary_hash'])[:16]}…`")
    versions = config.get("versions") or {}
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if labels:
        lines += ["", "## Labels and decision thresholds", "", "| label | threshold |", "|---|---|"]
        thresholds = config.get("thresholds")
        for i, label in enumerate(labels):
            t = "argmax"
            if isinstance(thresholds, list) and i < len(thresholds):
                t = _fmt(thresholds[i])
            elif isinstance(thresholds, (int, float)):
                t = _fmt(thresholds)
            lines.append(f"| {label} | {t} |")
    if metrics:
        lines += ["", "## Results", ""]
        split = metrics.get("split") if isinstance(metrics, Mapping) else None
        if split:
            lines += [f"Split: {split}", ""]
        summary = metrics.get("summary") if isinstance(metrics, Mapping) else None
        shown = summary if isinstance(summary, Mapping) else metrics
        rows = [(k, v) for k, v in shown.items() if isinstance(v, (int, float, dict))]
        rows = [(k, v) for k, v in rows if not isinstance(v, dict) or "value" in v]
        if rows:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    lines += [
        "",
        "## Intended use and limits",
        "",
        "A research tool for Chinese clinical text. It is not a medical device: its outputs",
        "must be reviewed by a clinician. Results hold for data like the training data only;",
        "check them on your own notes (`ehrtext evaluate`) before use.",
        "",
    ]
    return "\n".join(lines)
