"""Ids of runs and task runs: time-ordered UUIDs (version 7, RFC 9562).

A run's rows are found, and deleted, through indexes keyed on these ids (the
primary keys, the edges' ends). Random (version 4) ids scatter the rows of one
run, and of one day, across every such index: once the history outgrows the
database's cache, each lookup reads another page. Ids that begin with the time
they were made keep them together, as the rows themselves are: retention
deleting the oldest runs reads a few pages instead of thousands, and new rows
are added at one end of each index. The rest of the id is random, and each id
is still a UUID (a Celery task id, a URL part) like any other.
"""

import os
import time
import uuid

_VERSION = 0x7 << 76  # the version field of a UUID as an integer
_VARIANT = 0x2 << 62  # RFC 9562's variant (10)
_FIELDS = (0xF << 76) | (0x3 << 62)


def uuid7() -> uuid.UUID:
    """A new version 7 UUID: 48 bits of Unix time in milliseconds, 74 random bits."""
    return uuid.UUID(bytes=packed(1))


def packed(count: int) -> bytes:
    """``count`` new version 7 UUIDs of the same millisecond, 16 bytes each (a
    launch's task runs: kept as bytes, not objects, see ``graph.NodeIds``)."""
    stamp = (time.time_ns() // 1_000_000) << 80
    random = os.urandom(10 * count)
    return b"".join(
        (
            (stamp | int.from_bytes(random[10 * n : 10 * n + 10], "big")) & ~_FIELDS
            | _VERSION
            | _VARIANT
        ).to_bytes(16, "big")
        for n in range(count)
    )
