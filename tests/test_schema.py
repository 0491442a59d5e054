"""`gradcheck schema`: a JSON Schema (draft 2020-12) that editors can use, checked with the
`jsonschema` package against every catalog file and against cases the loader refuses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from gradcheck.cli import main
from gradcheck.errors import CaseError
from gradcheck.ir.ops import OPS
from gradcheck.loading import load_text

CATALOG = Path(__file__).resolve().parent.parent / "cases"


@pytest.fixture(scope="module")
def schema() -> dict:
    from gradcheck.loading.models import case_json_schema

    return case_json_schema()


@pytest.fixture(scope="module")
def validator(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _properties(node, path=()):
    """Every (path, property schema) under any `properties` of the schema."""
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            yield path + (key,), value
        for key, value in node.items():
            yield from _properties(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _properties(value, path + (i,))


def test_the_command_prints_a_draft_2020_12_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "gradcheck case" and schema["description"]
    assert {"name", "inputs"} <= set(schema["required"])
    assert schema["additionalProperties"] is False


def test_every_field_has_a_description(schema):
    fields = list(_properties(schema))
    assert len(fields) >= 25  # the case, its inputs, tolerance, expect
    assert [path for path, prop in fields if not prop.get("description")] == []


def test_every_catalog_file_validates(validator):
    files = sorted(CATALOG.rglob("*.yaml"))
    assert len(files) >= 40
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            assert list(validator.iter_errors(doc)) == [], file


BOTH = {"name": "both", "inputs": {"a": 1.0}, "expr": "a * 2", "graph": {"b": "a * 2"}}


def test_expr_and_graph_together_are_refused_by_schema_and_loader(validator):
    assert [e.validator for e in validator.iter_errors(BOTH)] == ["oneOf"]
    assert not validator.is_valid({"name": "neither", "inputs": {"a": 1.0}})
    with pytest.raises(CaseError, match="exactly one of `expr` and `graph`"):
        load_text(yaml.safe_dump(BOTH), "both.yaml")


def test_op_names_are_an_enum_and_calls_must_name_one(schema, validator):
    assert schema["$defs"]["op"]["enum"] == sorted(OPS)
    case = {"name": "c", "inputs": {"a": 1.0}}
    assert validator.is_valid({**case, "expr": "sum(exp(a) * a, axis=0) + log (a) + 2"})
    assert validator.is_valid({**case, "graph": {"b": "tanh(a)", "c": "b ** 2", "d": 1.5}})
    for wrong in ("frob(a)", "sum(expx(a))", "xexp(a)", "exp(a) + Sum(a)"):
        assert not validator.is_valid({**case, "expr": wrong}), wrong
        assert not validator.is_valid({**case, "graph": {"b": wrong}}), wrong
