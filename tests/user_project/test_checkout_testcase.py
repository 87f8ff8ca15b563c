from django.test import TestCase

from django_workflows import launch
from django_workflows.testing import assert_succeeded, eager, stub_task


class CheckoutTests(TestCase):
    def test_checkout_ships_the_order(self):
        with eager():
            run = launch("checkout", {"order": 1})
        assert_succeeded(run, result={"order": 1, "status": "shipped"})

    def test_shipping_sees_what_charge_returned(self):
        with eager(), stub_task("shop.tasks.charge", returns={"order": 2, "paid": True}):
            run = launch("checkout", {"order": 2})
        assert_succeeded(run)
        self.assertEqual(run.task_runs.get(task="shop.tasks.ship").args, [])
        self.assertEqual(run.result, {"order": 2, "status": "shipped"})
