"""The label contract: schema, `Labels`, `validate` and the canonical output text."""

from __future__ import annotations

import json

import jsonschema
import pytest

import psyedge
from psyedge.contract import FIELDS, Labels, allowed_values, canonical_json, most_severe, validate
from psyedge.errors import LabelError

GOOD = {"depression_level": 2, "anxiety_level": 1, "risk_flag": "none", "student_distress_score": 5}


def test_schema_is_package_data_and_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(psyedge.LABEL_SCHEMA)
    assert list(psyedge.LABEL_SCHEMA["properties"]) == list(FIELDS)
    assert FIELDS == ("depression_level", "anxiety_level", "risk_flag", "student_distress_score")
    assert allowed_values("risk_flag") == ("none", "suicidal", "self_harm", "violence")
    assert allowed_values("student_distress_score") == tuple(range(10))


def test_canonical_json_is_compact_and_in_schema_order() -> None:
    shuffled = dict(reversed(list(GOOD.items())))
    assert canonical_json(shuffled) == (
        '{"depression_level":2,"anxiety_level":1,"risk_flag":"none","student_distress_score":5}'
    )
    assert Labels.from_dict(GOOD).to_json() == canonical_json(GOOD)
    assert Labels.from_json(canonical_json(GOOD)) == Labels(**GOOD)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"depression_level": 4}, "depression_level"),
        ({"anxiety_level": -1}, "anxiety_level"),
        ({"risk_flag": "suicide"}, "risk_flag"),
        ({"student_distress_score": 1.5}, "student_distress_score"),
        ({"student_distress_score": "5"}, "student_distress_score"),
        ({"depression_level": True}, "boolean"),
        ({"extra": 1}, "extra"),
    ],
)
def test_validate_rejects_with_the_offending_field(patch: dict, needle: str) -> None:
    with pytest.raises(LabelError, match=needle):
        validate({**GOOD, **patch})


def test_validate_lists_every_missing_field() -> None:
    with pytest.raises(LabelError) as exc:
        validate({})
    for field in FIELDS:
        assert field in str(exc.value)


def test_labels_refuses_invalid_construction_and_bad_json() -> None:
    with pytest.raises(LabelError):
        Labels(depression_level=9, anxiety_level=0, risk_flag="none", student_distress_score=0)
    with pytest.raises(LabelError, match="not JSON"):
        Labels.from_json('{"depression_level":2,')


def test_most_severe_follows_the_documented_order() -> None:
    assert most_severe(["violence", "suicidal"]) == "suicidal"
    assert most_severe({"self_harm", "violence", "none"}) == "self_harm"
    assert most_severe([]) == "none"


def test_every_combination_round_trips_through_the_canonical_text() -> None:
    n = 0
    for d in allowed_values("depression_level"):
        for r in allowed_values("risk_flag"):
            for s in allowed_values("student_distress_score"):
                obj = {"depression_level": d, "anxiety_level": 3 - d, "risk_flag": r,
                       "student_distress_score": s}
                text = canonical_json(obj)
                assert json.loads(text) == obj
                n += 1
    assert n == 4 * 4 * 10
