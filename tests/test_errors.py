"""One base exception class per layer: callers at a boundary catch the layer's base."""

from __future__ import annotations

import pytest

from hubblepy.codec.errors import DecodeError
from hubblepy.datapath import DatapathError, DatapathUnavailable
from hubblepy.filters import FilterError
from hubblepy.lab.errors import ControlError, LabError, ScenarioError
from hubblepy.observer.errors import AgentError, BadRequest, ObserverError, ReplayError
from hubblepy.policy import IdentityAllocator, IdentityExhausted, PolicyError, parse_policies
from hubblepy.policy.identity import MAX_LOCAL_IDENTITY


@pytest.mark.parametrize(
    ("error", "base"),
    [
        (DatapathUnavailable, DatapathError),
        (IdentityExhausted, PolicyError),
        (AgentError, ObserverError),
        (ReplayError, ObserverError),
        (BadRequest, ObserverError),
        (ScenarioError, LabError),
        (ControlError, LabError),
    ],
)
def test_layer_errors_derive_from_the_layer_base(error: type[Exception], base: type[Exception]) -> None:
    assert issubclass(error, base)


def test_bad_input_errors_stay_value_errors() -> None:
    # Callers that treat bad input as ValueError keep working.
    assert issubclass(DecodeError, ValueError) and issubclass(FilterError, ValueError)
    assert issubclass(DatapathError, RuntimeError)


def test_policy_layer_raises_its_base() -> None:
    with pytest.raises(PolicyError):
        parse_policies("kind: Nope\n", "bad.yaml")
    allocator = IdentityAllocator({MAX_LOCAL_IDENTITY: ("k8s:app=last",)})
    with pytest.raises(PolicyError, match="no free local identity left"):
        allocator.allocate(("k8s:app=one-more",))
