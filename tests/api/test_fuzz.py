"""Requests generated from the OpenAPI schema (schemathesis) against the WSGI application.

Valid and invalid requests, to unknown ids and to runs in every state, with an
authenticated client: every operation is exercised, no response is a 5xx, and every
response (status code, content type, body) is one the schema documents. Nothing
reaches the broker: the engine's dispatch is recorded, and the launches and
operations the fuzzer made must have reached it.
"""

import pytest
import schemathesis
from django.contrib.auth.models import Permission, User
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import positive_data_acceptance

from django_workflows import engine, launch
from django_workflows.models import Workflow
from tests.helpers import record_sends

pytestmark = pytest.mark.django_db(transaction=True)

#: Examples per operation: enough to reach every error path, small enough to stay fast.
EXAMPLES = 30
#: The operations of the schema (GET, POST... of each path): a new one is fuzzed too.
OPERATIONS = 13
#: Requests the OpenAPI schema allows and the server refuses with a documented 400,
#: which this check expects to be accepted: a well-formed task run id that is not
#: one of the run's (a 400 on the ``task_run`` field, as DRF's related fields do);
#: a launch whose payload (or its absence) does not match the named workflow's own
#: JSON Schema, which one OpenAPI schema for every workflow cannot express (seen
#: with a random seed: ``{"name": "arith"}`` and no payload, 400 ``invalid_payload``).
LENIENT = {
    "POST /api/workflows/{id}/rerun/": [positive_data_acceptance],
    "POST /api/workflows/": [positive_data_acceptance],
}


def report(wf: Workflow, node: int, value=None, error: Exception | None = None) -> None:
    run = wf.task_runs.get(node=node)
    engine.task_started(str(run.pk), str(wf.pk), "worker-1")
    if error is None:
        engine.task_succeeded(str(run.pk), str(wf.pk), node, value)
    else:
        engine.task_failed(str(run.pk), error, "Traceback")


def runs_in_every_state() -> list[Workflow]:
    running = launch("arith", {"x": 1, "y": 2})
    done = launch("arith", {"x": 1, "y": 2}, idempotency_key="done")
    for node, value in [(0, 3), (1, 4), (2, 5), (3, 9)]:
        report(done, node, value)
    failed = launch("breaks", {})
    report(failed, 0, 2)
    report(failed, 1, error=ValueError("boom"))
    canceled = launch("breaks", {}).cancel()
    return [running, done, failed, canceled]


def fuzz(operation, strategies: list, headers: dict) -> None:
    """Send EXAMPLES requests drawn from ``strategies``; validate each response."""
    excluded = LENIENT.get(operation.label, [])

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    check()


def recording(app, statuses: list[int]):
    """``app`` (WSGI), noting the status code of every response it gives."""

    def wrapped(environ, start_response):
        def start(status, headers, exc_info=None):
            statuses.append(int(status.split()[0]))
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wrapped


def test_generated_requests_get_documented_responses_and_no_server_error(monkeypatch):
    dispatched = record_sends(monkeypatch)
    user = User.objects.create_user("fuzzer")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="django_workflows"))
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    runs = runs_in_every_state()
    dispatched.clear()  # from here on, only what the requests made the engine send
    known = {
        "id": [str(wf.pk) for wf in runs] + [str(wf.task_runs.get(node=1).pk) for wf in runs],
        "name": ["arith", "breaks", "etl"],
    }
    statuses: list[int] = []
    app = recording(get_wsgi_application(), statuses)
    schema = schemathesis.openapi.from_wsgi("/api/schema/", app)
    schema = schema.exclude(path="/api/schema/")
    # Our token authenticates every request: no made-up session cookies or tokens besides it.
    # NUL characters are refused (400): PostgreSQL cannot store them. test_api checks that.
    schema.config.generation.update(with_security_parameters=False, allow_x00=False)
    # DRF and django-filter are lenient by design: an empty filter or a bad page_size is
    # ignored, "yes" is a boolean, 12 a string. Invalid input must still never be a 5xx.
    schema.config.checks.update(excluded_check_names=["negative_data_rejection"])
    statuses.clear()  # the schema's own download is not a fuzzed request

    failures, fuzzed = {}, []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategies = [
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        ]
        for parameter in operation.path_parameters:
            strategies += [
                operation.as_strategy(path_parameters={parameter.name: value})
                for value in known[parameter.name]
            ]
        before = len(statuses)
        try:
            fuzz(operation, strategies, headers)
        except Exception as exc:  # report every operation's failure, not only the first
            failures[operation.label] = exc
        fuzzed.append((operation.label, len(statuses) - before))

    print(f"\nschemathesis: {len(statuses)} requests to {len(fuzzed)} operations")
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
    assert len(fuzzed) == OPERATIONS, fuzzed
    assert all(count >= 1 for _, count in fuzzed), fuzzed  # each one was requested
    assert len(statuses) >= OPERATIONS * EXAMPLES, fuzzed
    assert [code for code in statuses if code >= 500] == []
    assert {200, 201, 400, 404, 409} <= set(statuses)
    # launches, relaunches, resumes and reruns reached the engine
    assert dispatched, "no request made the engine send anything"
