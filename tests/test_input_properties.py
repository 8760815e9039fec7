"""Property-based tests of what the models and the preprocessor accept (small profile).

For every registered model (tiny widths) and for `PointCloudPreprocessor`:
valid inputs (any set size up to the padded length, padding anywhere and
holding anything, duplicated points, coordinates from 1e-30 to 1e14, other
dtypes) give finite outputs invariant to point order, padding and the rest of
the batch; invalid ones (NaN / inf / out-of-range coordinates, empty sets and
masks, wrong ranks, widths, dtypes and keys, broken raw clouds) raise a
``ValueError`` whose message names the problem. The properties and their
tolerances are in `property_checks.py`; this runs them with few examples
(``DDEQ_PROPERTY_PROFILE``, default ``"ci"``); ``python -m
tests.property_check --profile large`` runs thousands.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from property_checks import PROPERTIES, cases
from property_models import DDEQ, MODELS, profile


def hypothesis_settings(prop):
    """The profile's settings for one property (no example database: nothing is
    written to the working tree; CI examples are derandomised)."""
    p = profile()
    return settings(max_examples=p.examples[prop], deadline=None, database=None,
                    derandomize=p.derandomize, print_blob=True,
                    suppress_health_check=list(HealthCheck))


def run_property(prop, name):
    """Runs one property under hypothesis (raises what the first failure raised)."""
    @settings(hypothesis_settings(prop))
    @given(data=st.data())
    def check(data):
        PROPERTIES[prop](name, data)

    check()


@pytest.mark.parametrize("prop,name", list(cases(MODELS, DDEQ)),
                         ids=lambda v: v or "preprocessor")
def test_input_property(prop, name):
    run_property(prop, name)
