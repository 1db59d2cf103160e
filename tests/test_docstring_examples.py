"""The examples in the docstrings run and give what they show.

Every module of ``ehrtext`` whose docstrings hold examples that run (examples marked
``# doctest: +SKIP`` need a trained model or the shared datasets, and are left out) is one
test; a wrong output or an exception fails it with doctest's report.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ehrtext

_FINDER = doctest.DocTestFinder(exclude_empty=True)


def _runnable(test: doctest.DocTest) -> int:
    return sum(not ex.options.get(doctest.SKIP, False) for ex in test.examples)


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(ehrtext.__path__, prefix="ehrtext."):
        if info.name == "ehrtext.__main__":
            continue  # runs the CLI
        module = importlib.import_module(info.name)
        if any(_runnable(t) for t in _FINDER.find(module)):
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_examples_are_collected() -> None:
    # the text layer, the models and the CLI all document themselves with examples
    for name in ("ehrtext.text.tokenize", "ehrtext.text.context", "ehrtext.text.pipeline"):
        assert name in MODULES
    assert len(MODULES) >= 30


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    ran = 0
    for test in _FINDER.find(module):
        if not _runnable(test):
            continue
        runner.run(test, out=report.append)
        ran += _runnable(test)
    result = runner.summarize(verbose=False)
    assert ran > 0
    assert result.failed == 0, "".join(report)
