from celery import group

from django_workflows import workflow

from .tasks import add, collect, fail, gate, nap, tsum

SCHEMA = {
    "type": "object",
    "properties": {
        "x": {"type": "integer"},
        "y": {"type": "integer", "minimum": 0},
        "tag": {"type": "string"},
    },
    "required": ["x", "y"],
    "additionalProperties": False,
}


@workflow("arith", schema=SCHEMA, description="Adds, fans out, sums.")
def arith(payload):
    x, y = payload["x"], payload["y"]
    return add.s(x, y) | group(add.s(1), add.s(2)) | tsum.s()


@workflow("breaks")
def breaks(payload):
    """A chain whose second step fails."""
    return add.s(1, 1) | fail.s(message=payload.get("message", "boom")) | add.s(1)


@workflow("hooked", on_success=collect.s("on_success"), on_failure=collect.s("on_failure"))
def hooked(payload):
    """Calls its hooks: collect records what they received."""
    if payload.get("fail"):
        return add.s(1, 1) | fail.s(message="hooked failure")
    return add.s(1, 1) | add.s(1)


@workflow("bad_hook", on_success=fail.s(message="the hook broke"))
def bad_hook(payload):
    """Succeeds; its on_success hook raises."""
    return add.s(2, 2)


@workflow(
    "slow",
    schema={"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}}},
)
def slow(payload):
    """Naps, then adds: long enough to overlap with the next fire."""
    return nap.s(payload.get("seconds", 1), value=1) | add.s(1)


@workflow("gated")
def gated(payload):
    """Fails at its gate until the test opens it (Switch "gate")."""
    return add.s(1, 1) | gate.s() | add.s(1)
