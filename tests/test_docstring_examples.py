"""The `Example:` blocks of the shipped files run as written and print what they show."""

import doctest

import pytest

from modeling_eat import configuration_eat, feature_extraction_eat, masking_eat, modeling_eat


@pytest.mark.parametrize("module", [configuration_eat, feature_extraction_eat, masking_eat, modeling_eat])
def test_examples_in_the_shipped_files_run(module):
    results = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.failed == 0
    if module is modeling_eat:
        assert results.attempted >= 10  # the three public forwards' examples were found and run
