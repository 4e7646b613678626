"""Every example in the public docstrings runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tracetorch",
    "tracetorch.functional",
    "tracetorch.neuron",
    "tracetorch.layer",
    "tracetorch.model",
    "tracetorch.snn",
    "tracetorch.snn._layer",
    "tracetorch.snn._family_b",
    "tracetorch.exporter",
    "tracetorch.runtime",
    "tracetorch.nir",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_generated_layer_example() -> None:
    import tracetorch as tt

    for name in tt.snn.FAMILY_A + tt.snn.FAMILY_B:
        cls = getattr(tt.snn, name)
        parser = doctest.DocTestParser()
        test = parser.get_doctest(cls.__doc__, {}, name, None, 0)
        assert test.examples, name
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert runner.failures == 0, name
