"""JSON exactly as Celery's ``json`` serializer writes and reads it.

Results, args and kwargs are stored with kombu's encoder and read back with
its decoder, so a child receives from the database the very value it would
have received from a native Celery message (datetimes, UUIDs, Decimals and
bytes included).
"""

import json
from typing import Any

from kombu.utils.json import JSONEncoder, object_hook
from kombu.utils.json import dumps as kombu_dumps

__all__ = ["CeleryJSONDecoder", "CeleryJSONEncoder", "decode", "encode", "round_trip"]

CeleryJSONEncoder = JSONEncoder


class CeleryJSONDecoder(json.JSONDecoder):
    """Decoder that undoes :class:`kombu.utils.json.JSONEncoder`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("object_hook", object_hook)
        super().__init__(*args, **kwargs)


def encode(value: Any) -> str:
    """``value`` as Celery's JSON serializer writes it; NaN and infinities refused."""
    return kombu_dumps(value, allow_nan=False)


def decode(text: str) -> Any:
    """Read what :func:`encode` wrote."""
    return json.loads(text, cls=CeleryJSONDecoder)


def round_trip(value: Any) -> Any:
    """Return ``value`` as a Celery JSON message would deliver it.

    Raises ``TypeError`` or ``ValueError`` for a value the JSON serializer
    cannot carry, and for NaN and infinities, which Python's json writes but
    JSON (and so the database's JSON columns) does not have.
    """
    return decode(encode(value))
