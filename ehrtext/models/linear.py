"""The linear baseline: TF-IDF over character 1–3-grams and words + a linear model.

Every deep model in ehrtext is measured against this one, in the same run, on the same split.

Features: the note is normalized with :func:`ehrtext.text.normalize` (full-width → half-width,
whitespace …); character n-grams are taken from the normalized text, words from
:class:`ehrtext.text.Tokenizer` (token norms). Each block is TF-IDF weighted (sublinear tf,
smooth idf) and L2-normalized, and the blocks are concatenated.

Classifiers:

* ``"logreg"``: logistic regression (multinomial for multi-class; one model per label for
  multi-label — one-vs-rest; one for binary), probabilities from the model itself.
* ``"svm"``: a linear SVM (``LinearSVC``), probabilities calibrated on out-of-fold decision
  values (``calibration_folds``-fold): one softmax temperature for multi-class, Platt scaling
  (a, b per label) for binary and multi-label.

Saving needs no pickle: :meth:`TfidfLinearModel.to_state` returns arrays (idf, coef,
intercept, calibration) for safetensors and a JSON-ready config that holds the vocabularies
(n-gram and word lists, index = position); :meth:`TfidfLinearModel.from_state` rebuilds a model
that predicts the same probabilities.

Example:
    >>> from ehrtext.models.linear import TfidfLinearModel
    >>> m = TfidfLinearModel(min_df=1).fit(["胸痛2天", "咳嗽咳痰", "胸痛伴出汗", "咳嗽3天"],
    ...                                    [0, 1, 0, 1], "multiclass", ["心", "肺"])
    >>> m.predict_proba(["胸痛"]).argmax(axis=1).tolist()
    [0]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ehrtext.errors import InputError, ModelFileError, describe_type

__all__ = ["CLASSIFIERS", "LINEAR_FORMAT", "TfidfLinearModel"]

CLASSIFIERS = ("logreg", "svm")
LINEAR_FORMAT = 1
_TASKS = ("binary", "multiclass", "multilabel")


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class TfidfLinearModel:
    """TF-IDF (character n-grams + words) and a linear classifier, saved without pickle.

    Args:
        classifier: ``"logreg"`` or ``"svm"`` (see the module docstring).
        C: inverse regularisation strength (default 10 for logreg, 0.5 for svm).
        char_ngrams: (min, max) character n-gram lengths, or None for no character block.
        word_ngrams: (min, max) word n-gram lengths, or None for no word block.
        min_df: keep n-grams / words seen in at least this many training notes.
        max_features: keep at most this many of each block (most frequent).
        class_weight: ``None`` or ``"balanced"``.
        calibration_folds: folds for the SVM's probability calibration.
        tokenizer_config: :attr:`ehrtext.text.Tokenizer.config` for the word block.
        seed: random seed (SVM solver, calibration folds).

    Example:
        >>> m = TfidfLinearModel(classifier="svm", min_df=1, calibration_folds=2)
        >>> m = m.fit(["胸痛", "胸闷", "咳嗽", "咳痰"], [[1, 0], [1, 0], [0, 1], [0, 1]],
        ...           "multilabel", ["心", "肺"])
        >>> m.predict_proba(["咳嗽咳痰"]).shape
        (1, 2)
    """

    def __init__(
        self,
        *,
        classifier: str = "logreg",
        C: float | None = None,
        char_ngrams: tuple[int, int] | None = (1, 3),
        word_ngrams: tuple[int, int] | None = (1, 1),
        min_df: int = 2,
        max_features: int | None = None,
        class_weight: str | None = None,
        calibration_folds: int = 3,
        tokenizer_config: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        if classifier not in CLASSIFIERS:
            raise InputError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        if char_ngrams is None and word_ngrams is None:
            raise InputError("at least one of char_ngrams and word_ngrams is needed")
        if class_weight not in (None, "balanced"):
            raise InputError("class_weight must be None or 'balanced'")
        self.classifier = classifier
        self.C = float(C) if C is not None else (10.0 if classifier == "logreg" else 0.5)
        self.char_ngrams = tuple(char_ngrams) if char_ngrams else None
        self.word_ngrams = tuple(word_ngrams) if word_ngrams else None
        self.min_df = int(min_df)
        self.max_features = max_features
        self.class_weight = class_weight
        self.calibration_folds = int(calibration_folds)
        self.tokenizer_config = dict(tokenizer_config) if tokenizer_config else None
        self.seed = int(seed)
        self.task: str | None = None
        self.labels: list[str] | None = None
        self._char_vocab: list[str] | None = None
        self._word_vocab: list[str] | None = None
        self._char_idf: np.ndarray | None = None
        self._word_idf: np.ndarray | None = None
        self.coef_: np.ndarray | None = None  # [K, D] (K = 1 for binary)
        self.intercept_: np.ndarray | None = None  # [K]
        self.calibration_: dict[str, np.ndarray] = {}
        self._tokenizer = None
        self._char_vec = None
        self._word_vec = None

    # ---- features ------------------------------------------------------------------------

    @property
    def tokenizer(self):
        """The :class:`ehrtext.text.Tokenizer` of the word block (built on first use)."""
        if self._tokenizer is None:
            from ehrtext.text import Tokenizer

            self._tokenizer = (
                Tokenizer.from_config(self.tokenizer_config)
                if self.tokenizer_config
                else Tokenizer()
            )
            self.tokenizer_config = self._tokenizer.config
        return self._tokenizer

    def _check_texts(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise InputError("expected a list of notes, got one str: wrap it in a list")
        out = list(texts)
        for i, t in enumerate(out):
            if not isinstance(t, str):
                raise InputError(f"note {i} is {describe_type(t)}, not text")
        return out

    def _normalized(self, texts: list[str]) -> list[str]:
        from ehrtext.text.normalize import normalize_many

        return [n.text for n in normalize_many(texts, self.tokenizer.normalizer)]

    def _words(self, texts: list[str]) -> list[list[str]]:
        return [t.norms for t in self.tokenizer.pipe(texts, batch_size=512)]

    def _vectorizers(self):
        from sklearn.feature_extraction.text import CountVectorizer

        if self._char_vec is None and self._char_vocab is not None:
            self._char_vec = CountVectorizer(
                analyzer="char",
                ngram_range=self.char_ngrams,
                lowercase=False,
                vocabulary={t: i for i, t in enumerate(self._char_vocab)},
                dtype=np.float32,
            )
        if self._word_vec is None and self._word_vocab is not None:
            self._word_vec = CountVectorizer(
                lowercase=False,
                vocabulary={t: i for i, t in enumerate(self._word_vocab)},
                dtype=np.float32,
                **self._word_analyzer(),
            )
        return self._char_vec, self._word_vec

    @staticmethod
    def _weight(counts, idf: np.ndarray):
        from sklearn.preprocessing import normalize as l2

        counts = counts.tocsr().astype(np.float32)
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf
        counts = counts.multiply(idf[None, :]).tocsr()
        return l2(counts, norm="l2", copy=False)

    def _word_analyzer(self) -> dict[str, Any]:
        if self.word_ngrams == (1, 1):
            return {"analyzer": _identity}
        return {"analyzer": "word", "ngram_range": self.word_ngrams, "token_pattern": r"(?u)[^ ]+"}

    def _word_input(self, words: list[list[str]]):
        if self.word_ngrams == (1, 1):
            return words
        # word n-grams: sklearn's "word" analyzer on tokens joined by a character that no
        # token contains (spaces inside tokens such as "0.5g bid" are replaced)
        return [" ".join(w.replace(" ", "_") for w in ws) for ws in words]

    def transform(self, texts: Sequence[str]):
        """The TF-IDF feature matrix (scipy CSR, float32) of ``texts``."""
        from scipy import sparse

        if self.coef_ is None:
            raise InputError("the model is not fitted: call fit() or from_state() first")
        texts = self._check_texts(texts)
        char_vec, word_vec = self._vectorizers()
        blocks = []
        if char_vec is not None:
            blocks.append(self._weight(char_vec.transform(self._normalized(texts)), self._char_idf))
        if word_vec is not None:
            words = self._word_input(self._words(texts))
            blocks.append(self._weight(word_vec.transform(words), self._word_idf))
        return sparse.hstack(blocks, format="csr", dtype=np.float32)

    def _fit_features(self, texts: list[str]):
        from sklearn.feature_extraction.text import CountVectorizer

        n = len(texts)
        blocks = []
        if self.char_ngrams is not None:
            vec = CountVectorizer(
                analyzer="char",
                ngram_range=self.char_ngrams,
                lowercase=False,
                min_df=min(self.min_df, n),
                max_features=self.max_features,
                dtype=np.float32,
            )
            counts = vec.fit_transform(self._normalized(texts))
            self._char_vocab, self._char_idf, counts = self._vocab_idf(vec, counts, n)
            blocks.append(self._weight(counts, self._char_idf))
        if self.word_ngrams is not None:
            words = self._word_input(self._words(texts))
            vec = CountVectorizer(
                lowercase=False,
                min_df=min(self.min_df, n),
                max_features=self.max_features,
                dtype=np.float32,
                **self._word_analyzer(),
            )
            counts = vec.fit_transform(words)
            self._word_vocab, self._word_idf, counts = self._vocab_idf(vec, counts, n)
            blocks.append(self._weight(counts, self._word_idf))
        from scipy import sparse

        return sparse.hstack(blocks, format="csr", dtype=np.float32)

    @staticmethod
    def _vocab_idf(vec, counts, n: int):
        """Vocabulary in sorted order, its smooth idf, and the counts reordered to match."""
        vocab = vec.vocabulary_
        terms = sorted(vocab)
        order = np.array([vocab[t] for t in terms], dtype=np.int64)
        counts = counts.tocsc()[:, order].tocsr()
        df = np.bincount(counts.indices, minlength=len(terms)).astype(np.float64)
        idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        return terms, idf, counts

    # ---- training ------------------------------------------------------------------------

    def fit(
        self, texts: Sequence[str], targets: Sequence[Any], task: str, labels: Sequence[str]
    ) -> TfidfLinearModel:
        """Fit on notes and targets (class indices, 0/1, or multi-hot lists, as
        :meth:`ehrtext.data.TaskSpec.target` gives them). Returns ``self``."""
        if task not in _TASKS:
            raise InputError(f"task must be one of {_TASKS}, got {task!r}")
        texts = self._check_texts(texts)
        labels = [str(x) for x in labels]
        y = np.asarray(targets)
        if len(texts) != len(y):
            raise InputError(f"{len(texts)} notes but {len(y)} targets")
        if len(texts) < 2:
            raise InputError("at least two notes are needed to fit")
        if task == "multilabel":
            if y.ndim != 2 or y.shape[1] != len(labels):
                raise InputError(f"multilabel targets must be [n, {len(labels)}] 0/1")
        else:
            y = y.astype(np.int64).reshape(-1)
            k = 2 if task == "binary" else len(labels)
            if y.min() < 0 or y.max() >= k:
                raise InputError(f"targets must be class indices in [0, {k})")
        self.task, self.labels = task, labels
        X = self._fit_features(texts)
        if task == "multiclass":
            self._fit_multiclass(X, y)
        else:
            Y = y.reshape(-1, 1) if task == "binary" else y.astype(np.int64)
            self._fit_per_label(X, Y)
        self._char_vec = self._word_vec = None
        return self

    def _estimator(self, binary: bool):
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        if self.classifier == "svm":
            return LinearSVC(
                C=self.C, class_weight=self.class_weight, random_state=self.seed, max_iter=5000
            )
        return LogisticRegression(
            C=self.C, class_weight=self.class_weight, max_iter=2000, random_state=self.seed
        )

    def _fit_multiclass(self, X, y: np.ndarray) -> None:
        k = len(self.labels)
        present = np.unique(y)
        est = self._estimator(binary=False).fit(X, y)
        coef = np.zeros((k, X.shape[1]), dtype=np.float32)
        intercept = np.full(k, -1e4 if self.classifier == "svm" else -30.0, dtype=np.float32)
        if len(present) == 2:  # sklearn returns one row for two classes
            coef[present[1]] = est.coef_[0]
            intercept[present[1]] = est.intercept_[0]
            coef[present[0]] = 0.0
            intercept[present[0]] = 0.0
        else:
            coef[present] = est.coef_
            intercept[present] = est.intercept_
        self.coef_, self.intercept_ = coef, intercept
        self.calibration_ = {}
        if self.classifier == "svm":
            z = self._oof_decisions(X, y, multiclass=True)
            self.calibration_ = {"temperature": np.array([_fit_temperature(z, y)], np.float32)}

    def _fit_per_label(self, X, Y: np.ndarray) -> None:
        n_labels = Y.shape[1]
        coef = np.zeros((n_labels, X.shape[1]), dtype=np.float32)
        intercept = np.zeros(n_labels, dtype=np.float32)
        platt_a = np.ones(n_labels, dtype=np.float32)
        platt_b = np.zeros(n_labels, dtype=np.float32)
        for j in range(n_labels):
            yj = Y[:, j]
            pos = int(yj.sum())
            if pos == 0 or pos == len(yj):  # one class only: a constant model
                p = (pos + 0.5) / (len(yj) + 1.0)
                intercept[j] = math.log(p / (1 - p))
                continue
            est = self._estimator(binary=True).fit(X, yj)
            coef[j] = est.coef_[0]
            intercept[j] = est.intercept_[0]
            if self.classifier == "svm":
                z = self._oof_decisions(X, yj, multiclass=False)
                platt_a[j], platt_b[j] = _fit_platt(z, yj)
        self.coef_, self.intercept_ = coef, intercept
        self.calibration_ = (
            {"platt_a": platt_a, "platt_b": platt_b} if self.classifier == "svm" else {}
        )

    def _oof_decisions(self, X, y: np.ndarray, multiclass: bool) -> np.ndarray:
        """Out-of-fold decision values (for calibration), stratified folds."""
        from sklearn.model_selection import StratifiedKFold

        counts = np.bincount(y)
        folds = max(2, min(self.calibration_folds, int(counts[counts > 0].min())))
        if counts[counts > 0].min() < 2:
            folds = 2
        k = len(self.labels) if multiclass else 1
        z = np.zeros((X.shape[0], k), dtype=np.float64)
        try:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
            splits = list(splitter.split(np.zeros(len(y)), y))
        except ValueError:
            from sklearn.model_selection import KFold

            splits = list(KFold(folds, shuffle=True, random_state=self.seed).split(y))
        for train, test in splits:
            present = np.unique(y[train])
            if len(present) < 2:
                z[test] = 0.0
                continue
            est = self._estimator(binary=not multiclass).fit(X[train], y[train])
            d = est.decision_function(X[test])
            if not multiclass:
                z[test, 0] = d
            elif d.ndim == 1:
                z[test] = -1e4
                z[test, present[1]] = d
                z[test, present[0]] = 0.0
            else:
                z[test] = -1e4
                z[np.ix_(test, present)] = d
        return z if multiclass else z[:, 0]

    # ---- prediction ----------------------------------------------------------------------

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Raw linear scores ``X @ coef.T + intercept``: [n, K] (binary: [n])."""
        X = self.transform(texts)
        z = np.asarray(X @ self.coef_.T, dtype=np.float64) + self.intercept_[None, :]
        return z[:, 0] if self.task == "binary" else z

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated logits: softmax (multi-class) or sigmoid (binary, multi-label) of them
        are :meth:`predict_proba`."""
        z = self.decision_function(texts)
        if self.classifier == "svm":
            if self.task == "multiclass":
                z = z / float(self.calibration_["temperature"][0])
            else:
                a, b = self.calibration_["platt_a"], self.calibration_["platt_b"]
                z = z * a[0] + b[0] if self.task == "binary" else z * a[None] + b[None]
        return z

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities: [n, K] for multi-class (rows sum to 1) and multi-label; [n] (the
        positive class) for binary."""
        z = self.predict_logits(texts)
        return _softmax(z) if self.task == "multiclass" else _sigmoid(z)

    # ---- saving --------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, config)``: arrays for safetensors (idf per block, coef, intercept,
        calibration), config JSON-ready (settings, task, labels, vocabularies)."""
        if self.coef_ is None:
            raise InputError("the model is not fitted")
        arrays: dict[str, np.ndarray] = {
            "coef": np.ascontiguousarray(self.coef_, dtype=np.float32),
            "intercept": np.ascontiguousarray(self.intercept_, dtype=np.float32),
        }
        if self._char_idf is not None:
            arrays["char_idf"] = self._char_idf.astype(np.float32)
        if self._word_idf is not None:
            arrays["word_idf"] = self._word_idf.astype(np.float32)
        for name, value in self.calibration_.items():
            arrays[f"calibration.{name}"] = np.asarray(value, dtype=np.float32)
        config = {
            "kind": "linear",
            "linear_format": LINEAR_FORMAT,
            "task": self.task,
            "labels": list(self.labels or []),
            "classifier": self.classifier,
            "C": self.C,
            "char_ngrams": list(self.char_ngrams) if self.char_ngrams else None,
            "word_ngrams": list(self.word_ngrams) if self.word_ngrams else None,
            "min_df": self.min_df,
            "max_features": self.max_features,
            "class_weight": self.class_weight,
            "calibration_folds": self.calibration_folds,
            "seed": self.seed,
            "tokenizer": self.tokenizer.config,
            "char_vocabulary": self._char_vocab,
            "word_vocabulary": self._word_vocab,
        }
        json.dumps(config, ensure_ascii=False)  # fail here, not in the bundle writer
        return arrays, config

    @classmethod
    def from_state(cls, arrays: Mapping[str, Any], config: Mapping[str, Any]) -> TfidfLinearModel:
        """Rebuild a model saved with :meth:`to_state`.

        Raises:
            ModelFileError: a missing array or setting, shapes that do not match the
                vocabularies, or a newer linear format.
        """
        try:
            fmt = int(config.get("linear_format", 1))
            if fmt > LINEAR_FORMAT:
                raise ModelFileError(
                    f"linear model format {fmt} is newer than this ehrtext reads "
                    f"({LINEAR_FORMAT}): upgrade ehrtext"
                )
            model = cls(
                classifier=config["classifier"],
                C=config["C"],
                char_ngrams=tuple(config["char_ngrams"]) if config.get("char_ngrams") else None,
                word_ngrams=tuple(config["word_ngrams"]) if config.get("word_ngrams") else None,
                min_df=config.get("min_df", 2),
                max_features=config.get("max_features"),
                class_weight=config.get("class_weight"),
                calibration_folds=config.get("calibration_folds", 3),
                tokenizer_config=config.get("tokenizer"),
                seed=config.get("seed", 0),
            )
            model.task = config["task"]
            model.labels = [str(x) for x in config["labels"]]
            model._char_vocab = config.get("char_vocabulary")
            model._word_vocab = config.get("word_vocabulary")

            def arr(name: str) -> np.ndarray:
                value = arrays[name]
                if hasattr(value, "detach"):
                    value = value.detach().cpu().numpy()
                return np.asarray(value, dtype=np.float32)

            model.coef_ = arr("coef")
            model.intercept_ = arr("intercept")
            model._char_idf = arr("char_idf") if model._char_vocab is not None else None
            model._word_idf = arr("word_idf") if model._word_vocab is not None else None
            model.calibration_ = {
                k.split(".", 1)[1]: arr(k) for k in arrays if k.startswith("calibration.")
            }
        except KeyError as exc:
            raise ModelFileError(f"the linear model state lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"the linear model state is malformed: {exc}") from None
        n_features = len(model._char_vocab or []) + len(model._word_vocab or [])
        k = 1 if model.task == "binary" else len(model.labels)
        if model.coef_.shape != (k, n_features) or model.intercept_.shape != (k,):
            raise ModelFileError(
                f"coef {model.coef_.shape} / intercept {model.intercept_.shape} do not match "
                f"{k} outputs x {n_features} features"
            )
        for name, vocab, idf in (
            ("char", model._char_vocab, model._char_idf),
            ("word", model._word_vocab, model._word_idf),
        ):
            if vocab is not None and idf.shape != (len(vocab),):
                raise ModelFileError(
                    f"{name}_idf has {idf.shape[0]} entries for {len(vocab)} vocabulary entries"
                )
        if model.classifier == "svm":
            need = ["temperature"] if model.task == "multiclass" else ["platt_a", "platt_b"]
            for name in need:
                if name not in model.calibration_:
                    raise ModelFileError(f"the linear model state lacks 'calibration.{name}'")
        return model

    def __repr__(self) -> str:
        return (
            f"TfidfLinearModel(classifier={self.classifier!r}, task={self.task!r}, "
            f"labels={len(self.labels or [])})"
        )


def _fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature minimising out-of-fold log-loss (bounded search)."""
    from scipy.optimize import minimize_scalar

    idx = np.arange(len(y))

    def nll(log_t: float) -> float:
        zz = z / math.exp(log_t)
        zz = zz - zz.max(axis=1, keepdims=True)
        lse = np.log(np.exp(zz).sum(axis=1))
        return float(np.mean(lse - zz[idx, y]))

    res = minimize_scalar(nll, bounds=(-6.0, 4.0), method="bounded")
    return float(math.exp(res.x))


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling ``sigmoid(a z + b)`` fitted on out-of-fold decision values."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=1000).fit(z.reshape(-1, 1), y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if not a > 0:  # too little data to calibrate: a falling curve would invert the ranking
        return 1.0, 0.0
    return a, b
