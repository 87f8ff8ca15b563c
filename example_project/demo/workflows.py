"""Workflow definitions of the demo, found at startup like tasks.py."""

from celery import group

from django_workflows import workflow

from .tasks import audit, clean, fetch, flaky, load

ETL_SCHEMA = {
    "type": "object",
    "properties": {
        "source": {"type": "string", "default": "s3://bucket/numbers.csv"},
        "target": {"type": "string", "default": "warehouse.numbers"},
    },
    "required": ["source", "target"],
    "additionalProperties": False,
}


@workflow("etl", schema=ETL_SCHEMA)
def etl(payload: dict):
    """Fetch numbers, clean and audit them in parallel, then load them."""
    return fetch.s(payload["source"]) | group(clean.s(), audit.s()) | load.s(payload["target"])


@workflow(
    "etl_flaky",
    schema={
        "type": "object",
        "properties": {"source": {"type": "string"}, "fail": {"type": "boolean"}},
        "required": ["source"],
    },
)
def etl_flaky(payload: dict):
    """Like etl, with a step that fails unless told otherwise."""
    return (
        fetch.s(payload["source"])
        | flaky.s(fail=payload.get("fail", True))
        | group(clean.s(), audit.s())
        | load.s("warehouse.flaky")
    )
