from celery import shared_task


class PaymentDeclined(Exception):
    pass


@shared_task
def reserve(order: int) -> dict:
    return {"order": order, "reserved": True}


@shared_task
def charge(reservation: dict) -> dict:
    return {**reservation, "paid": True}


@shared_task
def ship(payment: dict) -> dict:
    return {"order": payment["order"], "status": "shipped"}
