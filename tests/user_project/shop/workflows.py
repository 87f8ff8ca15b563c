from django_workflows import workflow

from .tasks import charge, reserve, ship


@workflow("checkout")
def checkout(payload):
    return reserve.s(payload["order"]) | charge.s() | ship.s()
