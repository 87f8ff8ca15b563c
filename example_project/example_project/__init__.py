# Load the Celery app whenever Django starts, so that launches use its broker.
from .celery import app as celery_app

__all__ = ["celery_app"]
