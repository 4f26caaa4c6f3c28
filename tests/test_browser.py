"""Lessons 1, 7 and 8 in a real browser: JupyterLab from .venv, Debian's chromium driven by
Playwright.

Runs all cells as a student would, moves sliders with the keyboard as a person would (lesson 1:
kernel and stride; lesson 8: the atlas explorer's stage and unit), checks that the picture and
the readout change, measures slider latency (key press to new image), presses the explorer's
button, runs lesson 7 whole (only its tagged error shown) and saves screenshots under
test-output/browser/. Skipped where chromium or playwright
is missing, except with CI=true, where .ci/run installs them and the test must run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rfviz.arithmetic import conv_output_size

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOK = "01_conv_output_size.ipynb"
EXPLORER = "08_atlas_explorer.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


if _missing():
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run in CI: {_missing()}", pytrace=False)
    pytest.skip(_missing(), allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402
from servers import free_port, stop, wait_until_served  # noqa: E402


def _write_settings(folder: Path) -> None:
    """User settings for the test's JupyterLab: every cell in the DOM (no virtual scrolling,
    so widgets far from the view exist), the kernel started without asking, and no "Jupyter
    news?" toast over the page (`make lab` sets the last one too, from binder/overrides.json)."""
    settings = {
        "notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in settings.items():
        path = folder / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1, a free port and a token, in a copy of notebooks/ (and of the
    atlas beside it, as in the repository).

    Yields (base url, token, log path). ``expose_app_in_browser`` lets the test ask the
    application itself whether the kernel is ready and run commands by their ids.
    """
    folder = tmp_path_factory.mktemp("lab") / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder)
    shutil.copytree(ROOT / "docs" / "atlas", folder.parent / "docs" / "atlas")  # lesson 8 reads it
    settings = tmp_path_factory.mktemp("settings")
    _write_settings(settings)
    port, token = free_port(), uuid.uuid4().hex
    jupyter = Path(sys.executable).with_name("jupyter")
    log_path = tmp_path_factory.mktemp("log") / "lab.log"
    log = open(log_path, "w")  # noqa: SIM115
    server = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={folder}", f"--LabApp.user_settings_dir={settings}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_served(f"http://127.0.0.1:{port}/api/status?token={token}", server, log_path)
        yield f"http://127.0.0.1:{port}", token, log_path
    finally:
        stop(server)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_lesson(browser, lab, notebook: str):
    """A new page with ``notebook`` open in a fresh workspace, every cell run, widgets drawn."""
    base, token, log_path = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    workspace = uuid.uuid4().hex  # a fresh workspace: no tabs restored from earlier runs
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={token}")
    try:
        page.wait_for_selector(".jp-NotebookPanel:visible .jp-Notebook", timeout=90_000)
        wait_for_kernel(page)
        run_all_cells(page, notebook)
        page.wait_for_selector(".widget-slider .noUi-handle", timeout=60_000)  # drawn
    except Exception:
        save_failure(page, f"setup-failure-{Path(notebook).stem}", log_path)
        raise
    return page


@pytest.fixture(scope="module")
def page(browser, lab):
    page = open_lesson(browser, lab, NOTEBOOK)
    yield page
    page.close()


@pytest.fixture(scope="module")
def explorer_page(browser, lab):
    page = open_lesson(browser, lab, EXPLORER)
    yield page
    page.close()


# The notebook panel in front, its kernel and its code cells' prompts, as the page has them.
NOTEBOOK_STATE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const context = panel && panel.sessionContext;
    const kernel = context && context.session && context.session.kernel;
    const prompts = [...document.querySelectorAll(
        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')];
    return {
        ready: Boolean(context && context.isReady),
        kernel: kernel ? kernel.status : null,
        connection: kernel ? kernel.connectionStatus : null,
        prompts: prompts.map(e => e.textContent.trim()),
    };
}"""


def notebook_state(page) -> dict:
    return page.evaluate(NOTEBOOK_STATE)


def save_failure(page, name: str, log_path: Path) -> None:
    """What a person would look at: a screenshot, the kernel's state and the server's log."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"))
    try:
        state = notebook_state(page)
    except Exception as error:  # the page itself may be the problem
        state = {"error": repr(error)}
    state["lab_log_tail"] = log_path.read_text(errors="replace")[-4000:]
    (OUTPUT / f"{name}.json").write_text(json.dumps(state, indent=1))


def wait_for_kernel(page, timeout: float = 120) -> None:
    """Wait until the notebook's kernel is really ready: session ready, kernel connected and
    idle, and its kernel_info reply received. JupyterLab sometimes asks which kernel to start
    (when the kernel specs arrive after the notebook): answer as a person would."""
    deadline = time.monotonic() + timeout
    choose = page.locator(".jp-Dialog button:has-text('Select')")
    while time.monotonic() < deadline:
        if choose.count() and choose.first.is_visible():
            choose.first.click()
        state = notebook_state(page)
        if state["ready"] and state["kernel"] == "idle" and state["connection"] == "connected":
            page.evaluate("async () => {"
                          " await window.jupyterapp.shell.currentWidget.sessionContext"
                          ".session.kernel.info; }")
            return
        page.wait_for_timeout(250)
    raise TimeoutError(f"the kernel was not ready after {timeout} s: {notebook_state(page)}")


def code_cells(name: str) -> list[dict]:
    notebook = json.loads((ROOT / "notebooks" / name).read_text())
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def run_all_cells(page, notebook: str, timeout: float = 240, stalled_after: float = 8,
                  runs: int = 3) -> None:
    """Run every cell (the command behind Run > Run All Cells, by its id, so no menu click can
    miss) and wait until every code cell's prompt carries a number.

    A run can be dropped, before or after it starts (seen: right after the kernel started,
    every cell stayed "[ ]"). If the kernel stays idle for ``stalled_after`` seconds while some
    cell is still "[ ]" or "[*]", run all cells again, as a person would; at most ``runs``
    times.
    """
    total = len(code_cells(notebook))
    deadline = time.monotonic() + timeout
    for _ in range(runs):
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        idle_since = None
        while time.monotonic() < deadline:
            page.wait_for_timeout(500)
            state = notebook_state(page)
            numbered = [p for p in state["prompts"] if re.fullmatch(r"\[\d+\]:?", p)]
            if len(state["prompts"]) == total and len(numbered) == total:
                return
            if state["kernel"] != "idle":
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > stalled_after:
                break  # idle with cells not run: the request was dropped; run again
        else:
            raise TimeoutError(f"cells still not run after {timeout} s: {notebook_state(page)}")
    raise TimeoutError(f"Run All Cells left cells unrun {runs} times: {notebook_state(page)}")


# Slider latency: the targets (median 150 ms, p95 300 ms on 2 cores) are printed with what was
# measured; the test fails only where a slider is broken for a class (a second per step). The
# explorer measured 85 ms in one session and 165 ms in the next on the same kind of machine
# (whose Python-side drawing was ~1.5x slower that day): a timed assert at the target fails
# on a busy machine, not on slow code. benchmarks/bench_draw.py compares the drawing's speed
# side by side.
BROKEN = (1.0, 2.0)  # median, p95, in seconds


def slider_handle(page, label: str, within: str = ""):
    slider = page.locator(f"{within} .widget-slider:visible",
                          has=page.locator(f"label:text-is('{label}')"))
    return slider.locator(".noUi-handle")


def picture(page, within: str = "") -> str:
    return page.locator(f"{within} .widget-image:visible").first.get_attribute("src")


def press_and_wait(page, handle, key: str, within: str = "") -> float:
    """Press ``key`` on a focused slider handle; seconds until the panel's image changes."""
    before = picture(page, within)
    start = time.perf_counter()
    handle.press(key)
    page.wait_for_function(
        "([old, selector]) => { const img = document.querySelector(selector);"
        " return img && img.src !== old; }",
        arg=[before, f"{within} .widget-image".strip()], timeout=10_000, polling="raf")
    return time.perf_counter() - start


def value_of(handle) -> str:
    return handle.get_attribute("aria-valuetext") or handle.get_attribute("aria-valuenow")


def readout(page) -> str:
    return page.locator(".widget-html:visible", has_text="O =").first.inner_text()


def test_lesson_one_runs_and_its_sliders_move_the_picture(page):
    news = page.locator(".jp-Notification-Toast:visible", has_text="news")
    assert news.count() == 0  # the "Jupyter news?" toast is switched off, not covering the page
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                          ":visible")
    on_purpose = sum("raises-exception" in c["metadata"].get("tags", [])
                     for c in code_cells(NOTEBOOK))
    assert errors.count() == on_purpose == 1  # only the cell that fails to teach the rule

    kernel, stride = slider_handle(page, "kernel"), slider_handle(page, "stride")
    kernel.scroll_into_view_if_needed()
    start_kernel = int(kernel.get_attribute("aria-valuenow").split(".")[0])
    start_stride = int(stride.get_attribute("aria-valuenow").split(".")[0])
    press_and_wait(page, kernel, "ArrowRight")
    assert int(kernel.get_attribute("aria-valuenow").split(".")[0]) == start_kernel + 1
    press_and_wait(page, stride, "ArrowRight")
    size = conv_output_size(12, start_kernel + 1, start_stride + 1, 1)  # panel: size 12, pad 1
    assert readout(page).splitlines()[0].endswith(f"= {size}")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / "01_conv_output_size.png"))


def test_slider_latency_from_key_press_to_new_picture(page, capsys):
    kernel = slider_handle(page, "kernel")
    times = [press_and_wait(page, kernel, key) for key in ["ArrowRight", "ArrowLeft"] * 12]
    median, p95 = statistics.median(times), sorted(times)[int(0.95 * len(times)) - 1]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "latency.json").write_text(json.dumps({"seconds": times}))
    line = (f"slider latency over {len(times)} key presses: median {median * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms (targets 150 / 300 ms)")
    with capsys.disabled():
        print(f"\n{line}")
    assert len(times) >= 20
    assert median <= BROKEN[0] and p95 <= BROKEN[1], line


def test_dark_theme_keeps_the_readout_and_diagram_readable(page):
    page.click("li.lm-MenuBar-item:has-text('Settings')")
    page.hover("li.lm-Menu-item:visible:has-text('Theme')")
    page.click("li.lm-Menu-item:visible:has-text('JupyterLab Dark')")
    page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=30_000)
    line = page.locator(".widget-html:visible", has_text="O =").first.locator("div").first
    red, green, blue = (int(v) for v in re.findall(r"\d+", line.evaluate(
        "e => getComputedStyle(e).color"))[:3])
    assert 0.2126 * red + 0.7152 * green + 0.0722 * blue > 150  # light text on the dark page
    background = page.locator(".widget-image:visible").first.evaluate(
        "img => { const c = document.createElement('canvas'); c.width = img.naturalWidth;"
        " c.height = img.naturalHeight; const x = c.getContext('2d'); x.drawImage(img, 0, 0);"
        " return Array.from(x.getImageData(2, 2, 1, 1).data); }")
    assert background[:3] == [255, 255, 255]  # the diagram keeps its own white ground
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / "01_conv_output_size_dark.png"))


PANEL = ".rfviz-explorer"  # lesson 8's atlas explorer


def error_outputs(page) -> int:
    """How many error outputs (tracebacks, warnings) the notebook in front shows."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output"
                        "[data-mime-type='application/vnd.jupyter.stderr']").count()


def explorer_line(page) -> str:
    return page.locator(f"{PANEL} .widget-html:visible", has_text="traced now").first.inner_text()


def test_the_explorer_moves_the_box_with_its_unit_and_stage_sliders(explorer_page):
    page = explorer_page
    assert error_outputs(page) == 0
    unit, stage = slider_handle(page, "unit col", PANEL), slider_handle(page, "stage", PANEL)
    unit.scroll_into_view_if_needed()
    start = int(value_of(unit))
    press_and_wait(page, unit, "ArrowRight", PANEL)
    assert int(value_of(unit)) == start + 1
    assert explorer_line(page).startswith("resnet50 layer2:")
    press_and_wait(page, stage, "ArrowRight", PANEL)
    assert explorer_line(page).startswith("resnet50 layer3:")
    assert "the same as the atlas row" in explorer_line(page)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / "08_atlas_explorer.png"))


def test_explorer_latency_from_key_press_to_new_picture(explorer_page, capsys):
    page = explorer_page
    unit, stage = slider_handle(page, "unit row", PANEL), slider_handle(page, "stage", PANEL)
    unit.scroll_into_view_if_needed()
    units = [press_and_wait(page, unit, key, PANEL) for key in ["ArrowRight", "ArrowLeft"] * 8]
    stages = [press_and_wait(page, stage, key, PANEL) for key in ["ArrowLeft", "ArrowRight"] * 6]
    times = units + stages
    median, p95 = statistics.median(times), sorted(times)[int(0.95 * len(times)) - 1]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "explorer_latency.json").write_text(json.dumps({"unit": units, "stage": stages}))
    line = (f"explorer latency over {len(times)} key presses: median {median * 1000:.0f} ms "
            f"(unit {statistics.median(units) * 1000:.0f}, stage "
            f"{statistics.median(stages) * 1000:.0f}), p95 {p95 * 1000:.0f} ms "
            "(targets 150 / 300 ms)")
    with capsys.disabled():
        print(f"\n{line}")
    assert median <= BROKEN[0] and p95 <= BROKEN[1], line


def test_the_explorer_button_measures_the_unit_with_a_progress_bar(explorer_page):
    page = explorer_page
    before = picture(page, PANEL)
    page.locator(f"{PANEL} button:visible", has_text="measure by gradients").click()
    result = page.locator(f"{PANEL} .widget-html:visible", has_text="gradient support")
    result.wait_for(timeout=120_000)
    assert "= the traced box" in result.inner_text()
    assert picture(page, PANEL) != before  # the effective field drawn as heat
    bar = page.locator(f"{PANEL} .widget-hprogress:visible")
    assert bar.count() == 1
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / "08_atlas_explorer_measured.png"))




def test_lesson_seven_runs_all_with_only_its_tagged_error(browser, lab):
    # Lesson 7 (decoders: a U-Net on the photograph, exact and blended tiles) as a student
    # runs it: Run All reaches the last cell, and the one error shown is the cell tagged
    # raises-exception (an image off the U-Net's grid), not a cell that broke.
    notebook = "07_decoders.ipynb"
    page = open_lesson(browser, lab, notebook)
    try:
        tagged = sum("raises-exception" in c["metadata"].get("tags", ())
                     for c in code_cells(notebook))
        assert tagged == 1
        assert error_outputs(page) == tagged
        assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img"
                            ).count() >= 3  # its pictures drawn
    except AssertionError:
        save_failure(page, "lesson-07", lab[2])
        raise
    finally:
        page.close()
