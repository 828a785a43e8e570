"""The dashboard in a real browser (Debian's chromium driven by Playwright): launch a run by clicking,
watch it finish, monitor it, compare it, sample it. Screenshots of every page go to test-artifacts/."""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import gancore
from conftest import ROOT, subprocess_env

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"

REQUIRE = "GANCORE_REQUIRE_BROWSER"  # set (to 1) by .ci/run: there a missing browser fails the suite


@pytest.fixture(autouse=True, scope="module")
def chromium():
    """Skips without chromium, or fails when the browser test is required (CI), saying why."""
    if not Path(CHROMIUM).exists():
        reason = f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium); .ci/run installs it"
        if os.environ.get(REQUIRE, "") not in ("", "0"):
            pytest.fail(f"{REQUIRE} is set and the browser test cannot run: {reason}", pytrace=False)
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """A runs root with a finished conditional run and a 2-D run, and the dashboard serving it."""
    root = tmp_path_factory.mktemp("browser") / "runs"
    common = dict(device="cpu", runs_root=str(root), log_every=20)
    # long enough that the screenshots (README's guide) show digits and a ring, short enough for CI
    gancore.train(dict(common, name="baseline-digits", dataset="digits", conditioning="concat", steps=600,
                       sample_every=200, eval_every=200))
    gancore.train(dict(common, name="ring-nonsaturating", dataset="ring", steps=1500, log_every=50, sample_every=250,
                       eval_every=250))
    port = free_port()
    log = open(tmp_path_factory.mktemp("st") / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=subprocess_env(root), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"streamlit did not come up: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.3)
    yield url, root
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(dashboard):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1100})
        yield pg
        browser.close()


def settle(page):
    from playwright.sync_api import expect

    expect(page.locator(READY)).to_be_visible(timeout=60_000)


# counts the changes of the script's state from now on: a rerun has started once it is above 0
WATCH_RUNS = """() => {
  window.__gancoreRuns = 0;
  if (!window.__gancoreWatch) {
    window.__gancoreWatch = new MutationObserver(records => { window.__gancoreRuns += records.length; });
    window.__gancoreWatch.observe(document.body, {attributes: true, subtree: true,
                                                  attributeFilter: ['data-test-script-state']});
  }
}"""


def rerun_after(page, action):
    """Do `action` (which changes a widget) and wait for the script run it causes to end. Waiting for the idle
    state alone right after the action can see the state from before that run has started."""
    settle(page)
    page.evaluate(WATCH_RUNS)
    action()
    page.wait_for_function("window.__gancoreRuns > 0", timeout=60_000)
    settle(page)


def shot(page, name):
    """Screenshot the whole page: Streamlit scrolls inside its main area, so grow the window to fit it first."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.evaluate("Math.max(...['stMain', 'stAppViewContainer', 'stMainBlockContainer'].map("
                           "id => (document.querySelector(`[data-testid=${id}]`) || {scrollHeight: 0}).scrollHeight))")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(height + 40, size["height"]), 5000)})
    settle(page)
    page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg'))")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size(size)


def cut_off_labels(page) -> list[str]:
    """The buttons whose label is cut off (an ellipsis: an element of the button narrower than its text)."""
    return page.evaluate("""() => [...document.querySelectorAll("button")].filter(b => [b, ...b.querySelectorAll("*")]
        .some(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)).map(b => b.textContent)""")


def goto(page, title):
    from playwright.sync_api import expect

    page.locator("[data-testid='stSidebarNavLink']").filter(has_text=title).click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()  # the new page, not the old one
    settle(page)


def choose(page, key, option):
    """Pick `option` in the selectbox with this widget key: type it (which opens the list, filtered), click it."""
    box = page.locator(f".st-key-{key} input")
    if box.input_value() == option:  # chosen already: nothing to rerun
        return
    box.click()
    box.fill(option)
    rerun_after(page, page.get_by_role("option", name=option, exact=True).click)


def pick(page, key, name):
    """Add `name` to the multiselect with this widget key: type it (the list opens, filtered), click it; again
    when a rerun redrew the list under the click (the option detached), at most three times."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator(f".st-key-{key}")
    for _ in range(3):
        settle(page)
        if box.locator(f"[data-tag][aria-label='{name}']").count():  # picked already (a page's default run)
            return
        box.locator("input").fill(name)
        try:
            rerun_after(page, lambda: page.get_by_role("option", name=name, exact=True).click(timeout=10_000))
        except PlaywrightTimeout:
            continue
        finally:
            page.keyboard.press("Escape")
        return
    raise AssertionError(f"could not pick {name!r} in {key}")


def fill(page, key, value):
    """Type into the text or number input with this widget key, then leave it (which commits it)."""
    box = page.locator(f".st-key-{key} input")
    if box.input_value() == str(value):  # holds it already: nothing to rerun
        return
    box.fill(str(value))
    rerun_after(page, lambda: box.press("Tab"))


def test_launch_watch_compare_sample(dashboard, page):
    from playwright.sync_api import expect

    url, root = dashboard
    page.goto(url)
    settle(page)
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()

    # Launch: a short conditional run on digits, by clicking and typing
    goto(page, "Launch")
    fill(page, "f_name", "browser-run")
    choose(page, "f_dataset", "digits")
    choose(page, "f_conditioning", "concat")
    fill(page, "f_steps", 60)
    fill(page, "f_log_every", 5)
    shot(page, "launch")
    page.get_by_role("button", name=re.compile("Launch$")).click()
    settle(page)
    expect(page.get_by_text("Launched 1 run: browser-run")).to_be_visible(timeout=60_000)

    # Runs: the run reaches done (the fragment refreshes every few seconds)
    goto(page, "Runs")
    expect(page.get_by_text(re.compile(r"browser-run · done"))).to_be_visible(timeout=180_000)
    expect(page.get_by_role("button", name="Resume", exact=True)).to_be_enabled()
    # at 1,400 px every column fits (the table does not scroll sideways) and no button label is cut off
    table = page.locator("[data-testid='stDataFrame'] .dvn-scroller").first
    assert table.evaluate("e => e.scrollWidth - e.clientWidth") <= 1
    assert cut_off_labels(page) == []
    expect(page.get_by_text("Resume to step", exact=True)).to_be_visible()  # the box is labelled
    shot(page, "runs")

    # Monitor: loss chart and a sample grid
    goto(page, "Monitor")
    expect(page.get_by_text("loss_d and loss_g")).to_be_visible(timeout=60_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    expect(page.locator("[data-testid='stImage'] img").first).to_be_visible()
    shot(page, "monitor")

    # Compare: add the baseline to the launched run; both appear in the loss chart's legend
    goto(page, "Compare")
    pick(page, "cmp_runs", "baseline-digits")
    settle(page)
    legend = page.locator(".js-plotly-plot").first.locator(".legendtext")
    expect(legend.filter(has_text="browser-run")).to_have_count(1, timeout=30_000)
    expect(legend.filter(has_text="baseline-digits")).to_have_count(1)
    shot(page, "compare")

    # Samples: a row per class, from the longer baseline run
    goto(page, "Samples")
    expect(page.get_by_text(re.compile(r"browser-run · step 60 · seed 0 · rows: 0, 1, 2"))).to_be_visible(timeout=60_000)
    choose(page, "samples_pick", "baseline-digits")
    settle(page)
    expect(page.get_by_text(re.compile(r"baseline-digits · step 600 · seed 0 · rows: 0, 1, 2"))).to_be_visible()
    expect(page.locator("[data-testid='stImage'] img").first).to_be_visible()
    shot(page, "samples")

    # Mode collapse: the 2-D run's points over the true modes
    goto(page, "Mode collapse")
    choose(page, "mc_pick", "ring-nonsaturating")
    settle(page)
    expect(page.get_by_text("modes captured").first).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    shot(page, "mode_collapse")


def test_compare_groups_seeds_with_bands_verdicts_and_parallel_coordinates(dashboard, page):
    """Two configurations × three seeds each: Compare groups them by config, draws each group's mean with its 95%
    band, compares the groups' final scores pairwise and charts the differing settings against a score."""
    from playwright.sync_api import expect

    url, root = dashboard
    names = []
    for loss in ("nonsaturating", "hinge"):
        for seed in (0, 1, 2):
            names.append(f"grp-{loss}-seed{seed}")
            gancore.train(dict(device="cpu", runs_root=str(root), name=names[-1], dataset="ring", loss=loss,
                               seed=seed, steps=60, log_every=10, sample_every=30, eval_every=30))
    page.goto(url)
    settle(page)
    goto(page, "Compare")
    page.get_by_text("Filter", exact=True).click()
    fill(page, "cmp_pattern", "^grp-")  # the filter narrows the run list to the six
    settle(page)
    box = page.locator(".st-key-cmp_runs")
    for name in names:
        pick(page, "cmp_runs", name)
    expect(box.locator("[data-tag]")).to_have_count(6)
    # grouping is on by default once a group has several seeds: one legend entry per group, n = 3 each
    chart = page.locator(".js-plotly-plot").first
    expect(chart.locator(".legendtext").filter(has_text="(n=3)")).to_have_count(2, timeout=30_000)
    expect(chart.locator(".legendtext").filter(has_text="loss=hinge")).to_have_count(1)
    expect(chart.locator("path.js-fill")).to_have_count(2)  # a 95% band per group
    # the groups' table, then the pairwise table for a chosen score (the tables are canvases: AppTest reads them)
    choose(page, "cmp_pair_metric", "modes")
    settle(page)
    expect(page.get_by_text(re.compile("B - A of the groups' mean final modes"))).to_be_visible()
    expect(page.locator("[data-testid='stDataFrame'] canvas").nth(1)).to_be_visible()
    # settings against outcome: parallel coordinates over the differing fields (loss, seed) and the score, on request
    page.locator(".st-key-cmp_pc_show label").click()
    settle(page)
    choose(page, "cmp_pc_metric", "modes")
    settle(page)
    parcoords = page.locator(".st-key-cmp_parcoords .js-plotly-plot")
    expect(parcoords.locator(".parcoords")).to_have_count(1)
    for axis in ("loss", "seed", "modes"):
        expect(parcoords.locator("text.axis-title").filter(has_text=axis)).to_have_count(1)
    shot(page, "compare_groups")


def test_runs_and_compare_follow_a_run_started_elsewhere(dashboard, page):
    """A run started outside the dashboard (as the CLI starts one) shows up on an open Runs page by itself, and an
    open Compare page redraws as that run logs more steps: no page change, no reload."""
    from playwright.sync_api import expect

    from gancore import launch

    url, root = dashboard
    page.goto(url)
    settle(page)
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    path = launch.launch(dict(name="live-ring", dataset="ring", steps=20000, log_every=20, eval_every=0,
                              device="cpu"), root)
    try:
        expect(page.get_by_text(re.compile(r"\b1 (starting|running)\b"))).to_be_visible(timeout=60_000)
        goto(page, "Compare")
        pick(page, "cmp_runs", "live-ring")
        settle(page)
        # the last step the first chart draws for the run (plotly's decoded traces: _fullData)
        last_step = ("() => Math.max(...document.querySelectorAll('.js-plotly-plot')[0]._fullData"
                     ".filter(t => t.name === 'live-ring').map(t => t.x[t.x.length - 1]))")
        page.wait_for_function(f"({last_step})() > 0", timeout=60_000)
        first = page.evaluate(last_step)
        page.wait_for_function(f"({last_step})() > {first}", timeout=60_000)  # the chart follows, untouched
    finally:
        launch.stop(path)
