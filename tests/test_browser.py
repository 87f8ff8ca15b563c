"""The admin in a real browser: Debian's chromium driven by Playwright, a real worker.

Screenshots land in test-artifacts/ (look at them). Skipped when no
chromium is installed; CI installs it.
"""

import os
import shutil
import statistics
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from django_workflows import foreach, launch, launch_canvas
from django_workflows.models import WorkflowStatus as W
from tests.helpers import chord_run
from tests.testapp.models import Switch
from tests.testapp.tasks import add, const, gate_items, nap, tsum

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
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []  # no script error on any page the test went through


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
    # The story is at the top: what failed with what, what never ran, the resume plan.
    summary = page.inner_text(".dw-failures")
    assert "This run failed" in summary and "#1 tests.testapp.tasks.gate" in summary
    assert "RuntimeError: gate gate is closed" in summary
    assert "1 task never ran because of that" in summary and "#2 tests.testapp.tasks.add" in summary
    assert "Resume runs 2 tasks again" in summary
    assert page.title().startswith(f"gated {wf.pk} | Run of workflow “gated”")
    shot(page, "run-failure-summary")

    page.click(".dw-failures .dw-select[data-node='1']")  # selects the node
    page.wait_for_selector("#dw-details:not([hidden])")
    assert page.locator(".dw-node.dw-selected").get_attribute("data-node") == "1"
    details = page.inner_text("#dw-details")
    assert "RuntimeError: gate gate is closed" in details
    # The task's own frames first; Celery's are one click away.
    own = page.inner_text("#dw-details .dw-own-frames")
    assert "tests/testapp/tasks.py" in own and "celery/app/trace.py" not in own
    folded = page.locator("#dw-details details").first
    assert "Celery frames" in folded.inner_text() and not folded.get_attribute("open")
    folded.locator("summary").click()
    assert "celery/app/trace.py" in folded.inner_text()
    shot(page, "run-failure-details")

    Switch.objects.create(key="gate")
    page.click(".dw-failures .dw-resume-button")  # the plan was on the page: one click
    page.wait_for_selector('#dw-dag[data-status="success"]', timeout=60_000)
    assert page.locator('.dw-node[data-status="success"]').count() == 3
    page.wait_for_selector(".dw-header[data-status='success']")
    assert page.locator(".dw-failures").count() == 0
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


def test_a_running_run_turns_green_header_and_buttons_included_without_a_reload(worker, page):
    wf = launch_canvas(nap.si(1.5, 5) | add.s(1))
    page.goto(f"{page.base}/admin/django_workflows/workflow/{wf.pk}/change/")
    page.wait_for_selector(".dw-header[data-status='running']")
    assert page.locator("a.dw-op[data-op=cancel]").count() == 1
    assert page.locator("a.dw-op[data-op=relaunch]").count() == 0
    shot(page, "running-run")
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.wait_for_selector(".dw-header[data-status='success']", timeout=60_000)
    assert navigations == []
    header = page.locator(".dw-header")
    assert header.locator("[data-fact=status]").inner_text().strip() == "Success"
    assert "2/2" in header.locator("[data-fact=progress]").inner_text()
    assert header.locator("[data-fact=finished]").inner_text() != "-"
    assert header.locator("[data-fact=result]").inner_text() == "6"
    assert page.locator("a.dw-op[data-op=cancel]").count() == 0
    assert page.locator("a.dw-op[data-op=relaunch]").count() == 1
    assert page.locator('.dw-node[data-status="success"]').count() == 2
    page.wait_for_function("document.querySelectorAll('.dw-task-table .dw-success').length == 2")
    shot(page, "running-run-turned-green")


def test_a_run_reading_its_chord_header_says_so_and_stops_saying_it_once_read(worker, page):
    from celery import chord

    from django_workflows.models import Workflow

    said = []

    def members():
        yield add.si(1, 1)
        yield add.si(2, 2)
        wf = Workflow.objects.get(name="reading")
        page.goto(f"{page.base}/admin/django_workflows/workflow/{wf.pk}/change/")
        reading = page.locator("[data-fact=reading]")
        said.append(reading.inner_text())
        shot(page, "run-reading-its-chord-header")
        yield add.si(3, 3)

    wf = launch_canvas(chord(members(), tsum.s()), name="reading")

    assert "is being read by the process that launched the run" in said[0]
    page.wait_for_selector(".dw-header[data-status='success']", timeout=60_000)
    assert page.locator("[data-fact=reading]").count() == 0
    assert page.locator("[data-fact=result]").inner_text() == "12"
    assert wf.wait().result == 12


@pytest.mark.parametrize("size", [2000, 10000])
def test_a_large_run_opens_folded_and_readable_and_its_tasks_can_be_found(page, settings, size):
    """Rows only (nothing runs). The draw time is printed, not asserted."""
    settings.DJANGO_WORKFLOWS = {"MAX_NODES": None}
    wf = chord_run(size, failed=8)
    url = f"{page.base}/admin/django_workflows/workflow/{wf.pk}/change/"
    times = []
    for _ in range(3):
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_selector(".dw-fold text.dw-counts")
        times.append(time.perf_counter() - start)
    drawn = statistics.median(times)
    print(f"\n{size}-task run: page loaded and DAG drawn in {drawn:.2f} s (median of 3)")
    fold = page.locator(".dw-fold")
    assert page.locator(".dw-node").count() == 3
    assert fold.locator("text").first.text_content() == f"add ×{size - 2:,}"
    assert fold.locator(".dw-counts").text_content().split() == ["✗", "8", "✓", f"{size - 10:,}"]
    shot(page, f"run-{size}-folded")

    fold.click()  # opens it: failures first, a page at a time
    page.wait_for_selector("#dw-group:not([hidden]) .dw-member")
    members = page.locator("#dw-group .dw-member")
    assert members.count() == 100
    assert all("failure" in members.nth(i).inner_text() for i in range(8))
    assert "success" in members.nth(8).inner_text()
    assert f"1–100 of {size - 2:,}" in page.inner_text("#dw-group-range")
    members.first.click()
    page.wait_for_selector("#dw-details:not([hidden])")
    assert "ValueError: bad input" in page.inner_text("#dw-details")
    page.click("#dw-group-next")
    page.wait_for_selector(f"#dw-group-range:has-text('101–200 of {size - 2:,}')")
    shot(page, f"run-{size}-opened")

    # Find a task deep in the fold: its page opens, it is highlighted, its details shown.
    target = size // 2 + 3
    page.fill("#dw-find-input", f"#{target}")
    page.press("#dw-find-input", "Enter")
    page.wait_for_selector(f"#dw-group .dw-member.dw-selected[data-node='{target}']")
    page.wait_for_selector(f"#dw-details-title:has-text('#{target} tests.testapp.tasks.add')")
    assert page.locator(".dw-fold.dw-selected").count() == 1
    shot(page, f"run-{size}-found")

    # By status: what matches stays lit, the rest is dimmed; Enter walks the matches.
    page.fill("#dw-find-input", "upstream failed")
    page.press("#dw-find-input", "Enter")
    page.wait_for_selector(f".dw-node.dw-selected[data-node='{size - 1}']")
    assert page.locator(".dw-node.dw-dim").count() == 2
    assert "1 task matches" in page.inner_text("#dw-find-status") or "1/1" in page.inner_text(
        "#dw-find-status"
    )
    # The task table pages and filters without leaving the page.
    page.select_option(".dw-task-table select", "failure")
    page.wait_for_selector(".dw-table-count:has-text('8 task runs')")
    assert page.locator(".dw-task-table tbody tr").count() == 8
    shot(page, f"run-{size}-found-by-status")


def test_the_dag_is_usable_from_the_keyboard(page):
    wf = chord_run(5, failed=1)
    page.goto(f"{page.base}/admin/django_workflows/workflow/{wf.pk}/change/")
    page.wait_for_selector(".dw-node[data-node='0']")
    page.focus(".dw-node[data-node='0']")
    page.keyboard.press("ArrowRight")  # to the group's first member
    focused = page.evaluate("document.activeElement.getAttribute('data-node')")
    assert focused in {"1", "2", "3"}
    page.keyboard.press("Enter")
    page.wait_for_selector("#dw-details:not([hidden])")
    assert f"#{focused} tests.testapp.tasks.add" in page.inner_text("#dw-details-title")
    page.keyboard.press("Escape")
    assert page.locator("#dw-details").is_hidden()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "dw-find-input"
