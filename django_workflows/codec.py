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

__all__ = [
    "MAX_DEPTH",
    "CeleryJSONDecoder",
    "CeleryJSONEncoder",
    "decode",
    "depth",
    "encode",
    "round_trip",
]

#: How deep lists and objects may nest in JSON a person sends (API bodies, admin forms):
#: deeper values would reach Python's recursion limit further on (in the encoders, the
#: schema validator, kombu), a 500 instead of a clear refusal.
MAX_DEPTH = 100

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


def depth(value: Any) -> int:
    """How deep lists and objects nest in ``value``, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, level + 1) for child in children)
    return deepest
