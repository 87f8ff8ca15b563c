import pytest
from shop.tasks import PaymentDeclined

from django_workflows import launch
from django_workflows.testing import assert_failed, assert_succeeded, eager, stub_task, worker


@pytest.mark.django_db
def test_checkout_ships_the_order():
    with eager():
        run = launch("checkout", {"order": 42})
    assert_succeeded(run, result={"order": 42, "status": "shipped"})


@pytest.mark.django_db
def test_a_declined_payment_ships_nothing_and_resumes():
    with eager():
        with stub_task("shop.tasks.charge", raises=PaymentDeclined("card expired")):
            run = launch("checkout", {"order": 42})
        assert_failed(run, task="charge")
        assert run.task_runs.get(task="shop.tasks.ship").status == "upstream_failed"

        run.resume()  # the card was renewed: charge and ship run, reserve is reused
    assert_succeeded(run, result={"order": 42, "status": "shipped"})


@pytest.mark.django_db(transaction=True)
def test_checkout_on_a_real_worker():
    with worker():
        run = launch("checkout", {"order": 7}).wait(timeout=10)
    assert_succeeded(run, result={"order": 7, "status": "shipped"})
