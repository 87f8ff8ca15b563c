"""Plain Celery tasks: nothing in them knows about workflows."""

import random
import time

from celery import shared_task


@shared_task
def fetch(source: str) -> list[int]:
    """Pretend to download numbers from ``source``."""
    time.sleep(0.2)
    rng = random.Random(source)
    return [rng.randint(1, 100) for _ in range(10)]


@shared_task
def clean(numbers: list[int]) -> list[int]:
    time.sleep(0.2)
    return sorted(n for n in numbers if n % 7)


@shared_task
def audit(numbers: list[int]) -> dict:
    time.sleep(0.2)
    return {"count": len(numbers), "max": max(numbers, default=None)}


@shared_task
def load(results: list, target: str) -> str:
    time.sleep(0.2)
    cleaned, report = results
    return f"loaded {len(cleaned)} rows into {target} ({report['count']} audited)"


@shared_task
def flaky(numbers: list[int], fail: bool = True) -> list[int]:
    """Fails when asked to: the run stops here and can be inspected."""
    if fail:
        raise RuntimeError("the upstream service answered 503")
    return numbers
