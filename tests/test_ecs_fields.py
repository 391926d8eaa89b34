"""Every document from every log uses only declared fields, with the declared types."""

from __future__ import annotations

import pathlib
from typing import Any

import orjson
import pytest

from forwarder.audit.assemble import assemble_lines
from forwarder.audit.record import Event
from forwarder.audit.tables.record_types import RECORD_TYPE_NUMBERS
from forwarder.ecs import normalizations
from forwarder.ecs.fields import FIELD_TYPES, FIELDS, check_document
from forwarder.ecs.normalize import NormalizeOptions, normalize
from tests.corpus import all_logs

OPTIONS = NormalizeOptions(
    host_name="fields-host", include_original=True, users={0: "root", 1000: "alice"}, groups={0: "root"}
)


def _events(path: pathlib.Path) -> list[Event]:
    with path.open("rb") as lines:
        return assemble_lines(lines)


LOGS = all_logs()


@pytest.mark.skipif(not LOGS, reason="no logs (neither fixtures nor the shared corpus)")
@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_documents_use_declared_fields(path: pathlib.Path) -> None:
    problems: dict[str, int] = {}
    for event in _events(path):
        document = normalize(event, OPTIONS)
        orjson.dumps(document)  # serializable as is
        for problem in check_document(document):
            problems[problem] = problems.get(problem, 0) + 1
    assert not problems, problems


def test_declared_types_are_known() -> None:
    for name, field in FIELDS.items():
        assert field.type in FIELD_TYPES, name
        assert field.description, name


def test_no_declared_field_is_also_an_object() -> None:
    """A name cannot be both a leaf and a parent (the engines would refuse the mapping)."""
    for name in FIELDS:
        parent = name.rpartition(".")[0]
        while parent:
            assert parent not in FIELDS, (parent, name)
            parent = parent.rpartition(".")[0]


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"user": {"nickname": "x"}}, "user.nickname: field not declared"),
        ({"process": {"pid": "12"}}, "process.pid: '12' is not of type long"),
        ({"process": {"pid": True}}, "process.pid: True is not of type long"),
        ({"source": {"ip": "not-an-ip"}}, "source.ip: 'not-an-ip' is not of type ip"),
        ({"auditd": {"data": {"x": 1}}}, "auditd.data.x: leaf of a flattened field must be a string, got 1"),
        ({"auditd": {"paths": ["x"]}}, "auditd.paths: flattened value must be an object, got str"),
        ({"user": {}}, "user: empty object"),
    ],
)
def test_check_document_finds_problems(document: dict[str, Any], problem: str) -> None:
    assert problem in check_document(document)


def test_flattened_fields_accept_any_keys() -> None:
    document = {"auditd": {"data": {"anything": "x", "socket": {"addr": "1.2.3.4"}, "list": ["a", "b"]}}}
    assert check_document(document) == []


def test_table_names_known_record_types() -> None:
    unknown = [name for name in normalizations.RECORD_TYPES if name not in RECORD_TYPE_NUMBERS]
    assert not unknown
