"""The hyperparameter rules the hub and trainers share."""

from __future__ import annotations

import math

import pytest

from visionloop.common.v1 import training_pb2
from visionloop.lib import hyperparameters as hp

SPECS = hp.specs_from_defaults(
    {"epochs": 30, "learning_rate": 3e-3, "flip": True, "optimizer": "adamw", "anchors": [1, 2]},
    {"epochs": (1, 100), "learning_rate": (1e-6, None)},
)


def test_types_come_from_the_defaults_and_survive_the_wire() -> None:
    kinds = {spec.name: spec.type for spec in SPECS}
    assert kinds == {
        "epochs": hp.INTEGER,
        "learning_rate": hp.NUMBER,
        "flip": hp.BOOLEAN,
        "optimizer": hp.STRING,
        "anchors": hp.ANY,
    }
    wire = [training_pb2.HyperparameterSpec.FromString(s.to_proto().SerializeToString()) for s in SPECS]
    back = [hp.Spec.from_proto(s) for s in wire]
    assert [(s.name, s.type, s.minimum, s.maximum) for s in back] == [
        (s.name, s.type, s.minimum, s.maximum) for s in SPECS
    ]
    assert back[0].default == 30
    assert back[4].default == [1, 2]


def test_a_struct_with_nan_converts_without_raising() -> None:
    struct = hp.to_struct({"lr": math.nan, "nested": {"values": [1, math.inf]}})
    values = hp.from_struct(struct)
    assert math.isnan(values["lr"])
    assert values["nested"]["values"][1] == math.inf


def test_values_are_checked_and_corrected() -> None:
    checked = hp.check({"epochs": 12.0, "learning_rate": 1, "colour": "blue"}, SPECS, "net")
    assert not checked.errors
    assert checked.warnings == ("colour is not a hyperparameter of net; ignored",)
    assert checked.values["epochs"] == 12
    assert isinstance(checked.values["epochs"], int)
    assert checked.values["learning_rate"] == 1.0
    assert checked.values["flip"] is True  # the default where none is given


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
        ({"epochs": True}, "epochs must be an integer, got True"),
        ({"epochs": 0}, "epochs must be between 1 and 100, got 0"),
        ({"learning_rate": 0.0}, "learning_rate must be at least 1e-06, got 0"),
        ({"learning_rate": "fast"}, "learning_rate must be a number, got 'fast'"),
        ({"flip": "yes"}, "flip must be true or false, got 'yes'"),
        ({"optimizer": 3}, "optimizer must be a string, got 3"),
        ({"epochs": math.nan}, "epochs is NaN; hyperparameters must be finite numbers"),
        ({"learning_rate": -math.inf}, "learning_rate is infinite (-inf)"),
        ({"anchors": [1, None]}, "anchors[1] is null; leave it out to use the default"),
    ],
)
def test_errors_name_the_hyperparameter(values: dict[str, object], error: str) -> None:
    (found,) = hp.check(values, SPECS, "net").errors
    assert error in found


def test_generic_limits() -> None:
    assert hp.generic_problems({"": 1}) == ["hyperparameter name '' must be non-empty, without surrounding spaces"]
    assert "longer than 128" in hp.generic_problems({"x" * 200: 1})[0]
    assert "at most 256" in hp.generic_problems({f"p{i}": i for i in range(300)})[0]
    assert "at most 4096" in hp.generic_problems({"s": "x" * 5000})[0]
    deep: object = 1
    for _ in range(10):
        deep = [deep]
    assert "deeper than 8 levels" in hp.generic_problems({"deep": deep})[0]
    (many,) = hp.generic_problems({"big": list(range(20_000))})
    assert "more than 10000 values" in many
    assert hp.generic_problems({"fine": [1.5, {"a": "b"}, True]}) == []
