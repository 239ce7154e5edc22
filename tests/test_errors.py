"""Bad parameter values raise InvalidParameterError: a HeadstartError (one line and exit 2 at the
CLI) that library users can also catch as the ValueError scikit-learn raises for them."""

from __future__ import annotations

import pytest

from headstart import ImageClassifier
from headstart.augment import resolve_augment
from headstart.errors import HeadstartError, InvalidParameterError
from headstart.strategies import resolve_train_settings


def test_invalid_parameter_error_is_both_a_headstart_error_and_a_value_error() -> None:
    assert issubclass(InvalidParameterError, HeadstartError)
    assert issubclass(InvalidParameterError, ValueError)


@pytest.mark.parametrize(
    "call",
    [
        lambda: resolve_augment("nope"),
        lambda: resolve_augment("light", rotation=1e9),
        lambda: resolve_train_settings({"strategy": "nope"}, n_train=10),
        lambda: resolve_train_settings({"strategy": "features", "head": "nope"}, n_train=10),
        lambda: ImageClassifier().set_params(no_such_parameter=1),
    ],
    ids=["preset", "range", "strategy", "head", "set_params"],
)
def test_bad_parameter_values_can_be_caught_as_value_error(call) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    assert isinstance(caught.value, InvalidParameterError)
    assert "\n" not in str(caught.value)
