"""Bulk inserts without model instances: a batch of rows as one JSON parameter.

``bulk_create`` wants every row as a model instance and prepares every
field of every row, one query parameter each: a launch of 100,000 task runs
spent most of its time there (and in the driver quoting 33 parameters a
row), and held every instance until the transaction ended. Here a row is a
tuple of the columns that vary, taken from an iterator a batch at a time;
each batch is one JSON array, encoded in one call, that the database
unpacks into rows (PostgreSQL's ``jsonb_array_elements``, SQLite's
``json_each``). Every other column gets its field's default, prepared once.

Fields with ``auto_now`` or other ``pre_save`` behaviour are not for this
module. PostgreSQL and SQLite only (the databases the app supports).
"""

import datetime
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

from django.db import connections, models, router

#: Rows per statement.
BATCH_SIZE = 2000

_AS_IS = (
    models.JSONField,
    models.IntegerField,
    models.CharField,
    models.TextField,
    models.BooleanField,
)


def insert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    **constants: Any,
) -> int:
    """Insert ``rows`` (values of ``columns``, field names) into ``model``'s table.

    The model's other concrete fields take ``constants[name]``, or else
    their default; an auto-incremented primary key is left to the database.
    JSON columns are encoded as their field's encoder would (the varying
    ones share one). Returns the number of rows inserted.
    """
    connection = connections[router.db_for_write(model)]
    meta = model._meta
    varying = [meta.get_field(name) for name in columns]
    fixed = [
        field
        for field in meta.concrete_fields
        if field not in varying and not isinstance(field, models.AutoField)
    ]
    fixed_values = [
        field.get_db_prep_save(
            constants[field.name] if field.name in constants else field.get_default(), connection
        )
        for field in fixed
    ]
    converters = [_converter(field, connection) for field in varying]
    encoder = _encoder(varying)
    sql = _statement(connection, meta.db_table, varying, fixed)
    rows = iter(rows)
    count = 0
    with connection.cursor() as cursor:
        while batch := list(islice(rows, BATCH_SIZE)):
            document = json.dumps(
                [
                    [
                        value if convert is None else convert(value)
                        for convert, value in zip(converters, row, strict=True)
                    ]
                    for row in batch
                ],
                cls=encoder,
                separators=(",", ":"),
            )
            cursor.execute(sql, [*fixed_values, document])
            count += len(batch)
    return count


def _converter(field: models.Field, connection: Any) -> Callable[[Any], Any] | None:
    """How a value of ``field`` goes into the JSON batch: None for as it is."""
    if isinstance(field, _AS_IS):
        return None

    def convert(value: Any) -> Any:
        value = field.get_db_prep_save(value, connection)
        return str(value) if isinstance(value, uuid.UUID | datetime.date) else value

    return convert


def _encoder(fields: list[models.Field]) -> type[json.JSONEncoder] | None:
    encoders = {field.encoder for field in fields if isinstance(field, models.JSONField)}
    encoders.discard(None)  # json's own: the custom encoders only add types to it
    if len(encoders) > 1:
        raise ValueError(f"JSON columns with different encoders: {encoders}")
    return encoders.pop() if encoders else None


def _statement(connection: Any, table: str, varying: list, fixed: list) -> str:
    """INSERT ... SELECT of the batch's rows (the last parameter), then the
    fixed columns (the parameters before it)."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(field.column) for field in varying + fixed)
    if connection.vendor == "postgresql":
        values = [
            f"NULLIF(e.v->{i}, 'null')"
            if isinstance(field, models.JSONField)
            else f"(e.v->>{i})::{field.db_type(connection)}"
            for i, field in enumerate(varying)
        ]
        values += [f"%s::{field.db_type(connection)}" for field in fixed]
        source = "jsonb_array_elements(%s::jsonb) AS e(v)"
    elif connection.vendor == "sqlite":
        values = [
            _sqlite_json(f"'$[{i}]'")
            if isinstance(field, models.JSONField)
            else f"json_extract(e.value, '$[{i}]')"
            for i, field in enumerate(varying)
        ]
        values += ["%s"] * len(fixed)
        source = "json_each(%s) AS e"
    else:
        raise NotImplementedError(f"Bulk inserts on {connection.vendor}")
    return f"INSERT INTO {quote(table)} ({names}) SELECT {', '.join(values)} FROM {source}"


def _sqlite_json(path: str) -> str:
    """The JSON text at ``path`` (``json_extract`` gives SQL values for scalars),
    SQL NULL for null, as Django stores a JSON field on SQLite."""
    value = f"json_extract(e.value, {path})"
    return (
        f"CASE json_type(e.value, {path}) WHEN 'null' THEN NULL "
        f"WHEN 'text' THEN json_quote({value}) WHEN 'true' THEN 'true' "
        f"WHEN 'false' THEN 'false' ELSE {value} END"
    )
