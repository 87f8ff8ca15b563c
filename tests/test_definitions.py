"""Definitions: registry, autodiscovery and payload validation."""

import pytest
from celery import chain

from django_workflows import launch, workflow
from django_workflows.definitions import Definition, registry
from django_workflows.exceptions import DefinitionError, InvalidPayload, UnknownWorkflow
from django_workflows.models import TaskRun, Workflow
from tests.testapp.tasks import add


def test_workflows_modules_of_installed_apps_are_discovered():
    assert {"arith", "breaks", "etl", "etl_flaky"} <= {d.name for d in registry}
    assert registry.get("arith").description == "Adds, fans out, sums."
    assert registry.get("breaks").description == "A chain whose second step fails."


@pytest.mark.django_db
def test_unknown_name_lists_the_registered_ones_and_saves_nothing():
    with pytest.raises(UnknownWorkflow) as info:
        launch("nope", {})
    assert "'nope'" in str(info.value) and "arith" in str(info.value)
    assert not Workflow.objects.exists()


@pytest.mark.django_db
def test_invalid_payload_lists_every_message_and_saves_nothing():
    with pytest.raises(InvalidPayload) as info:
        launch("arith", {"x": "two", "y": -1, "extra": True})
    errors = info.value.errors
    assert {e["path"] for e in errors} == {"", "x", "y"}
    assert any("'two' is not of type 'integer'" in e["message"] for e in errors)
    assert any("less than the minimum" in e["message"] for e in errors)
    assert any("'extra' was unexpected" in e["message"] for e in errors)
    assert "x: 'two' is not of type 'integer'" in str(info.value)
    assert not Workflow.objects.exists() and not TaskRun.objects.exists()


def test_an_invalid_schema_is_refused_when_registered():
    with pytest.raises(DefinitionError, match="invalid JSON Schema"):
        Definition("bad", lambda p: add.s(1, 1), schema={"type": "nonsense"})


def test_the_same_name_twice_is_refused():
    try:
        workflow("twice")(lambda p: add.s(1, 1))
        with pytest.raises(DefinitionError, match="defined twice"):
            workflow("twice")(lambda p: add.s(2, 2))
    finally:
        registry.unregister("twice")


@pytest.mark.django_db
def test_a_definition_without_schema_takes_any_payload(monkeypatch):
    monkeypatch.setattr("django_workflows.engine.progress.dispatch", lambda runs, results: None)
    try:
        workflow("free")(lambda p: chain(add.s(p["a"], 1)))
        wf = launch("free", {"a": 1})
        assert wf.payload == {"a": 1}
        assert wf.task_runs.get().args == [1, 1]
    finally:
        registry.unregister("free")


def test_find_returns_the_definition_or_none_where_get_raises():
    assert registry.find("arith") is registry.get("arith")
    assert registry.find("nope") is None


def test_the_example_payload_has_the_required_properties_or_every_one():
    arith = registry.get("arith")
    assert arith.example_payload() == {"x": 0, "y": 0}
    assert arith.example_payload(with_optional=True) == {"x": 0, "y": 0, "tag": ""}
    assert Definition("free", lambda p: add.s(1, 1)).example_payload() == {}
