"""Hyperparameter rules shared by the hub (before queueing a training) and trainers (before training).

Two layers:

- ``generic_problems``: what no trainer can take whatever its variant: NaN or infinite numbers,
  nulls, empty or overlong names, nesting or sizes beyond reason. The hub applies them always.
- ``check``: a model variant's declared ``Spec`` list (type, bounds, default): wrong types and
  values outside the bounds are errors, unknown names warnings, missing names take the default.
  Trainers publish their specs (``ListModelVariants``, and in their node status so the hub can
  check a training before queueing it).

Values are plain Python (``from_struct``): ``google.protobuf.json_format`` refuses NaN, so the
Struct is walked directly and a bad value is reported instead of raising halfway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from visionloop.common.v1 import training_pb2

NUMBER = training_pb2.HYPERPARAMETER_TYPE_NUMBER
INTEGER = training_pb2.HYPERPARAMETER_TYPE_INTEGER
BOOLEAN = training_pb2.HYPERPARAMETER_TYPE_BOOLEAN
STRING = training_pb2.HYPERPARAMETER_TYPE_STRING
ANY = training_pb2.HYPERPARAMETER_TYPE_UNSPECIFIED
_TYPE_WORDS = {NUMBER: "a number", INTEGER: "an integer", BOOLEAN: "true or false", STRING: "a string"}

MAX_NAMES = 256
MAX_NAME_LENGTH = 128
MAX_STRING_LENGTH = 4096
MAX_ITEMS = 10_000  # values in lists and nested objects, all together
MAX_DEPTH = 8


@dataclass(frozen=True)
class Spec:
    """One declared hyperparameter."""

    name: str
    type: training_pb2.HyperparameterType
    default: Any
    minimum: float | None = None
    maximum: float | None = None

    def to_proto(self) -> training_pb2.HyperparameterSpec:
        spec = training_pb2.HyperparameterSpec(name=self.name, type=self.type)
        holder = struct_pb2.Struct()
        holder.update({"value": self.default})
        spec.default_value.CopyFrom(holder.fields["value"])
        if self.minimum is not None:
            spec.minimum = self.minimum
        if self.maximum is not None:
            spec.maximum = self.maximum
        return spec

    @classmethod
    def from_proto(cls, spec: training_pb2.HyperparameterSpec) -> Spec:
        return cls(
            name=spec.name,
            type=spec.type,
            default=_value(spec.default_value),
            minimum=spec.minimum if spec.HasField("minimum") else None,
            maximum=spec.maximum if spec.HasField("maximum") else None,
        )


@dataclass(frozen=True)
class Checked:
    """Errors make a training impossible; warnings are advice; ``values`` are what would be used."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    values: Mapping[str, Any]


def type_of(default: Any) -> training_pb2.HyperparameterType:
    """The HyperparameterType a default value implies (JSON numbers keep Python's int/float)."""
    if isinstance(default, bool):
        return BOOLEAN
    if isinstance(default, int):
        return INTEGER
    if isinstance(default, float):
        return NUMBER
    if isinstance(default, str):
        return STRING
    return ANY


def specs_from_defaults(
    defaults: Mapping[str, Any], ranges: Mapping[str, tuple[float | None, float | None]]
) -> tuple[Spec, ...]:
    """Specs typed by their defaults, bounded by ``ranges`` (name -> (lowest, highest))."""
    return tuple(Spec(name, type_of(value), value, *ranges.get(name, (None, None))) for name, value in defaults.items())


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python values, NaN and infinities included (json_format refuses them)."""
    return {name: _value(value) for name, value in struct.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    if kind == "null_value" or kind is None:
        return None
    return getattr(value, kind)


def to_struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def generic_problems(values: Mapping[str, Any]) -> list[str]:
    """What no trainer could take, each problem naming the hyperparameter (``anchors[2]`` inside lists)."""
    if len(values) > MAX_NAMES:
        return [f"{len(values)} hyperparameters; at most {MAX_NAMES} are accepted"]
    problems: list[str] = []
    budget = [MAX_ITEMS]
    for name, value in values.items():
        if not name or name.strip() != name:
            problems.append(f"hyperparameter name {name!r} must be non-empty, without surrounding spaces")
        elif len(name) > MAX_NAME_LENGTH:
            problems.append(f"hyperparameter name {name[:32]!r}... is longer than {MAX_NAME_LENGTH} characters")
        else:
            problems.extend(_value_problems(name, value, 1, budget))
    return problems


def _value_problems(path: str, value: Any, depth: int, budget: list[int]) -> list[str]:
    budget[0] -= 1
    if budget[0] < 0:
        return [f"{path}: the hyperparameters hold more than {MAX_ITEMS} values"] if budget[0] == -1 else []
    if value is None:
        return [f"{path} is null; leave it out to use the default"]
    if isinstance(value, float) and math.isnan(value):
        return [f"{path} is NaN; hyperparameters must be finite numbers"]
    if isinstance(value, float) and math.isinf(value):
        return [f"{path} is infinite ({'+' if value > 0 else '-'}inf); hyperparameters must be finite numbers"]
    if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
        return [f"{path} is a string of {len(value)} characters; at most {MAX_STRING_LENGTH} are accepted"]
    if isinstance(value, list | dict):
        if depth >= MAX_DEPTH:
            return [f"{path} nests lists and objects deeper than {MAX_DEPTH} levels"]
        items: Sequence[tuple[str, Any]] = (
            [(f"{path}[{i}]", item) for i, item in enumerate(value)]
            if isinstance(value, list)
            else [(f"{path}.{key}", item) for key, item in value.items()]
        )
        return [problem for where, item in items for problem in _value_problems(where, item, depth + 1, budget)]
    return []


def check(values: Mapping[str, Any], specs: Sequence[Spec], variant: str) -> Checked:
    """``values`` against a variant's specs: generic problems and type or bound errors, unknown
    names as warnings, the values to use (defaults filled in, whole numbers as ``int``)."""
    errors = generic_problems(values)
    warnings: list[str] = []
    declared = {spec.name: spec for spec in specs}
    used = {spec.name: spec.default for spec in specs}
    for name, value in values.items():
        spec = declared.get(name)
        if spec is None:
            warnings.append(f"{name} is not a hyperparameter of {variant}; ignored")
            continue
        fixed = _coerce(value, spec.type)
        if fixed is None or _not_finite(fixed):
            if not _not_finite(value):  # NaN and infinities are reported above already
                errors.append(f"{name} must be {_TYPE_WORDS.get(spec.type, 'a value')}, got {value!r}")
            continue
        if spec.type in (NUMBER, INTEGER) and not _within(fixed, spec):
            errors.append(f"{name} must be {_range(spec)}, got {fixed:g}")
            continue
        used[name] = fixed
    return Checked(tuple(errors), tuple(warnings), used)


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _within(value: float, spec: Spec) -> bool:
    return (spec.minimum is None or value >= spec.minimum) and (spec.maximum is None or value <= spec.maximum)


def _range(spec: Spec) -> str:
    if spec.minimum is not None and spec.maximum is not None:
        return f"between {spec.minimum:g} and {spec.maximum:g}"
    if spec.minimum is not None:
        return f"at least {spec.minimum:g}"
    return f"at most {spec.maximum:g}"


def _coerce(value: Any, kind: int) -> Any:
    """``value`` as ``kind``, or None when it is not one (JSON numbers arrive as floats)."""
    if kind == BOOLEAN:
        return value if isinstance(value, bool) else None
    if kind in (INTEGER, NUMBER):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if kind == NUMBER:
            return float(value)
        return int(value) if math.isfinite(value) and float(value) == int(value) else None
    if kind == STRING:
        return value if isinstance(value, str) else None
    return value
