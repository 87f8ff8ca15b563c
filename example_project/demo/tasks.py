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


# -- celery-director style, for demo/workflows.yml: ``(*args, **kwargs)``, ---------------------
# -- the previous result first, the payload as ``payload=`` -------------------------------------


@shared_task(name="NUMBERS")
def numbers(*args, **kwargs) -> list[int]:
    """Pretend to download numbers from the payload's source."""
    time.sleep(0.2)
    rng = random.Random(kwargs["payload"]["source"])
    return [rng.randint(1, 100) for _ in range(kwargs["payload"].get("count", 10))]


@shared_task(name="MEAN")
def mean(*args, **kwargs) -> float:
    time.sleep(0.2)
    return sum(args[0]) / max(len(args[0]), 1)


@shared_task(name="SPREAD")
def spread(*args, **kwargs) -> int:
    time.sleep(0.2)
    return max(args[0], default=0) - min(args[0], default=0)


@shared_task(name="REPORT")
def report(*args, **kwargs) -> str:
    average, width = args[0]
    return f"{kwargs['payload']['source']}: mean {average:.1f}, spread {width}"
