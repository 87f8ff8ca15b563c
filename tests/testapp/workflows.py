from celery import group

from django_workflows import workflow

from .tasks import add, fail, tsum

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
