"""The admin in a real browser: Debian's chromium driven by Playwright, a real worker.

Screenshots land in test-artifacts/ (look at them). Skipped when no
chromium is installed; CI installs it.
"""

import os
import shutil
import time
from pathlib import Path

import pytest
from celery import group
from django.contrib.auth import get_user_model

from django_workflows import foreach, launch, launch_canvas
from django_workflows.models import Workflow
from django_workflows.models import WorkflowStatus as W
from tests.testapp.models import Switch
from tests.testapp.tasks import add, const, gate_items, tsum

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright runs a loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    get_user_model().objects.create_superuser("admin", "admin@example.com", "secret-pw")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    page.base = live_server.url
    yield page
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_launch_the_demo_workflow_and_watch_it_succeed_without_reloading(worker, page):
    page.goto(f"{page.base}/admin/django_workflows/workflow/launch/")
    page.select_option("#id_definition", "etl")
    assert '"source"' in page.input_value("#id_payload")  # prefilled from the schema
    shot(page, "launch-page")
    page.click("#dw-launch input[type=submit]")

    page.wait_for_selector("#dw-dag .dw-node")
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.wait_for_selector('#dw-dag[data-status="success"]', timeout=60_000)
    assert navigations == []  # the picture refreshed itself
    assert page.locator('.dw-node[data-status="success"]').count() == 4
    shot(page, "run-success")

    page.goto(f"{page.base}/admin/django_workflows/workflow/")
    assert page.locator(".dw-badge.dw-success").count() == 1
    shot(page, "runs-list")


def test_open_a_failed_run_see_the_traceback_resume_it_and_see_it_finish(worker, page):
    wf = launch("gated").wait()
    assert wf.status == W.FAILURE
    page.goto(f"{page.base}/admin/django_workflows/workflow/{wf.pk}/change/")
    failed = page.locator('.dw-node[data-status="failure"]')
    failed.wait_for()
    assert page.locator('.dw-node[data-status="upstream_failed"]').count() == 1
    failed.click()
    page.wait_for_selector("#dw-details:not([hidden])")
    details = page.inner_text("#dw-details")
    assert "RuntimeError: gate gate is closed" in details and "Traceback" in details
    shot(page, "run-failure-details")

    Switch.objects.create(key="gate")
    page.click("a.dw-op[data-op=resume]")
    assert "tests.testapp.tasks.gate (failure)" in page.inner_text("#dw-plan-rerun")
    shot(page, "resume-plan")
    page.click("#dw-confirm input[type=submit]")
    page.wait_for_selector('#dw-dag[data-status="success"]', timeout=60_000)
    assert page.locator('.dw-node[data-status="success"]').count() == 3
    shot(page, "run-resumed")


def test_a_foreach_run_shows_its_items_and_resumes_only_the_failed_one(worker, page):
    canvas = const.s([1, 2, 3]) | foreach(gate_items.s(closed=[2])) | tsum.s()
    wf = launch_canvas(canvas).wait()
    assert wf.status == W.FAILURE
    page.goto(f"{page.base}/admin/django_workflows/workflow/{wf.pk}/change/")
    page.locator('.dw-node[data-status="failure"]').wait_for()
    drawn = page.locator("#dw-dag").text_content()
    assert "foreach gate_items ×3" in drawn
    assert all(f"gate_items [{i}]" in drawn for i in range(3))
    assert page.locator('.dw-node[data-status="success"]').count() == 3  # const, items 0 and 2
    shot(page, "foreach-failed-item")

    Switch.objects.create(key="item-2")
    page.click("a.dw-op[data-op=resume]")
    plan = page.inner_text("#dw-plan-rerun")
    assert "gate_items (failure)" in plan and "tsum (upstream_failed)" in plan
    page.click("#dw-confirm input[type=submit]")
    page.wait_for_selector('#dw-dag[data-status="success"]', timeout=60_000)
    assert page.locator('.dw-node[data-status="success"]').count() == 6
    shot(page, "foreach-resumed")
    wf.refresh_from_db()
    assert wf.result == 60


@pytest.mark.parametrize("size", [50, 2000])
def test_a_large_run_is_drawn_and_usable(page, monkeypatch, size):
    """Rows only (the broker send is recorded): this measures the page, not Celery."""
    monkeypatch.setattr("django_workflows.engine.progress.dispatch", lambda runs, results: None)
    wf = launch_canvas(add.s(1, 1) | group(add.s(i) for i in range(size - 2)) | add.s(0).set())
    start = time.perf_counter()
    page.goto(f"{page.base}/admin/django_workflows/workflow/{wf.pk}/change/")
    page.wait_for_function(
        f"document.querySelectorAll('#dw-dag .dw-node').length === {size}", timeout=60_000
    )
    drawn = time.perf_counter() - start
    print(f"\n{size}-node run: page loaded and DAG drawn in {drawn:.2f} s")
    page.locator(".dw-node").first.click()
    page.wait_for_selector("#dw-details:not([hidden])")
    shot(page, f"run-{size}-nodes")
    assert Workflow.objects.get().tasks_total == size
