"""The docstring examples of every module run (on one backend: they show the API,
not backend-specific numbers; the API's behaviour on every backend is tested elsewhere)."""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import ddeq_keras
from conftest import BACKEND

MODULES = sorted(m.name for m in pkgutil.walk_packages(ddeq_keras.__path__, "ddeq_keras."))


@pytest.mark.skipif(BACKEND != "jax", reason="docstring examples run on one backend (JAX)")
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {"keras": keras, "np": np, "ops": keras.ops}
    for test in finder.find(module, globs=dict(globs, **vars(module))):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
