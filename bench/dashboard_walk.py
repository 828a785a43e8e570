"""The dashboard walked as a new user walks it, in a real browser, timing every page it opens.

    python bench/dashboard_walk.py [--root DIR] [--port 8599] [--screenshots DIR]

Seven journeys on a fresh runs root (a temporary one unless --root names an empty or missing directory):
  1. empty root      Runs says there are none and offers the quick start
  2. one run         Launch a short conditional digits run, follow it on Runs, watch it on Monitor
  3. a sweep         Launch a 2 x 2 sweep on the ring (loss x seed) and follow the four runs to done
  4. compare         Compare the sweep, grouped by seed
  5. samples         Samples of the digits run
  6. mode collapse   the ring run's points over its modes
  7. bad input, stop, resume, delete   a refused field, then a run resumed, stopped and deleted

A page's load time runs from the click that opens it (or changes it) until its script has finished and every
chart on it is drawn: what a user waits for. Prints one markdown table (docs/benchmarks.md, "Dashboard walk") and
exits 1 when a page took more than --limit seconds (default 2). Needs Debian's chromium and the playwright package,
as the browser test does.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHARTS_DRAWN = "[...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg'))"
# counts the changes of the script's state from now on (stApp's data-test-script-state): a run started
WATCH_RUNS = """() => {
  window.__gancoreRuns = 0;
  if (!window.__gancoreWatch) {  // every change of the script state is a run starting or ending
    window.__gancoreWatch = new MutationObserver(records => { window.__gancoreRuns += records.length; });
    window.__gancoreWatch.observe(document.body, {attributes: true, subtree: true,
                                                  attributeFilter: ['data-test-script-state']});
  }
}"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, help="an empty (or missing) runs root to walk; default: a temporary one")
    p.add_argument("--port", type=int, default=0, help="the dashboard's port (default: a free one)")
    p.add_argument("--limit", type=float, default=2.0, help="seconds a page may take (default 2)")
    p.add_argument("--screenshots", type=Path, help="save a screenshot of each page here")
    args = p.parse_args(argv)
    if args.root is not None and args.root.exists() and any(args.root.iterdir()):
        p.error(f"--root: {args.root} is not empty; the walk starts from a fresh root")
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(root: Path, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, GANCORE_RUNS=str(root), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                             "--server.headless", "true", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2)
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit(f"dashboard_walk: streamlit did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.3)


class Walk:
    """A browser page plus the timings of every page it opens."""

    def __init__(self, page, shots: Path | None):
        self.page, self.shots, self.rows, self.journey = page, shots, [], ""

    def timed(self, what: str, action, heading: str | None = None):
        """Do `action` (a click), then wait until the page's script has run for it and its charts are drawn. The
        script's runs are counted by watching stApp's script state, so a rerun that has not started yet when the
        action returns is waited for, never missed."""
        from playwright.sync_api import expect

        if self.page.locator("[data-testid='stApp']").count():  # nothing of the previous action still runs
            expect(self.page.locator(READY)).to_be_visible(timeout=60_000)
        if heading is None:
            self.page.evaluate(WATCH_RUNS)
        start = time.perf_counter()
        action()
        if heading:  # the new page's own title: the old page is gone
            expect(self.page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=60_000)
        else:
            self.page.wait_for_function("window.__gancoreRuns > 0", timeout=60_000)
        expect(self.page.locator(READY)).to_be_visible(timeout=60_000)
        self.page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
        seconds = time.perf_counter() - start
        self.rows.append((self.journey, what, seconds))
        if self.shots:
            self.shots.mkdir(parents=True, exist_ok=True)
            slug = re.sub(r"[^a-z0-9]+", "-", f"{len(self.rows):02d} {self.journey} {what}".lower()).strip("-")
            self.page.screenshot(path=str(self.shots / f"{slug}.png"))
        return seconds

    def goto(self, title: str):
        link = self.page.locator("[data-testid='stSidebarNavLink']").filter(has_text=title)
        self.timed(f"open {title}", link.click, heading=title)

    def choose(self, key: str, option: str):
        box = self.page.locator(f".st-key-{key} input")
        if box.input_value() == option:  # chosen already: no rerun to wait for
            return
        box.click()
        box.fill(option)
        self.timed(f"pick {key.removeprefix('f_')}", self.page.get_by_role("option", name=option, exact=True).click)

    def fill(self, key: str, value):
        box = self.page.locator(f".st-key-{key} input")
        if box.input_value() == str(value):  # no change: no rerun to wait for
            return
        box.fill(str(value))
        self.timed(f"set {key.removeprefix('f_')}", lambda: box.press("Tab"))

    def click(self, what: str, name):
        self.timed(what, self.page.get_by_role("button", name=name).first.click)


def walk(w: Walk, url: str) -> None:
    from playwright.sync_api import expect

    page = w.page
    w.journey = "1 empty root"
    w.timed("open the dashboard", lambda: page.goto(url), heading="Runs")
    expect(page.get_by_text("No runs yet")).to_be_visible()

    w.journey = "2 one run"
    w.goto("Launch")
    page.locator(".st-key-f_name input").fill("walk-digits")
    w.choose("f_dataset", "digits")
    w.choose("f_conditioning", "concat")
    w.fill("f_steps", 200)
    w.click("Launch", re.compile("^.?Launch$"))
    expect(page.get_by_text("Launched 1 run: walk-digits")).to_be_visible()
    w.goto("Runs")
    expect(page.get_by_text(re.compile(r"walk-digits · done"))).to_be_visible(timeout=600_000)
    w.goto("Monitor")
    expect(page.locator("[data-testid='stImage'] img").first).to_be_visible()

    w.journey = "3 a sweep"
    w.goto("Launch")
    w.fill("f_name", "")  # sweep runs are named by the values they vary
    w.choose("f_dataset", "ring")
    w.choose("f_conditioning", "none")
    w.fill("f_steps", 500)
    page.get_by_text("Sweep (optional)").click()
    page.locator(".st-key-sweep_text textarea").fill("loss = nonsaturating, hinge\nseed = 0, 1")
    w.click("Launch the sweep", re.compile("^.?Launch$"))
    expect(page.get_by_text(re.compile(r"Launched 4 runs"))).to_be_visible()
    w.goto("Runs")
    expect(page.get_by_text("5 done", exact=True)).to_be_visible(timeout=900_000)  # the digits run and the four

    w.journey = "4 compare"
    w.goto("Compare")
    box = page.locator(".st-key-cmp_runs")
    ring = [f"ring-{loss}-seed{s}" for loss in ("nonsaturating", "hinge") for s in (0, 1)]
    for name in ring:
        if not box.locator(f"[data-tag][aria-label='{name}']").count():
            box.locator("input").fill(name)  # typing opens the list, filtered
            w.timed(f"add {name}", page.get_by_role("option", name=name, exact=True).click)
            page.keyboard.press("Escape")
    expect(page.locator(".js-plotly-plot").first.locator(".legendtext").filter(has_text="(n=2)")).to_have_count(2)

    w.journey = "5 samples"
    w.goto("Samples")
    w.choose("samples_pick", "walk-digits")
    expect(page.locator("[data-testid='stImage'] img").first).to_be_visible()

    w.journey = "6 mode collapse"
    w.goto("Mode collapse")
    w.choose("mc_pick", ring[0])
    expect(page.get_by_text("modes captured").first).to_be_visible()

    w.journey = "7 bad input, stop, resume, delete"
    w.goto("Launch")
    w.fill("f_steps", -5)
    w.click("Launch, refused", re.compile("^.?Launch$"))
    expect(page.get_by_text("steps: must be > 0").first).to_be_visible()
    w.goto("Runs")
    w.choose("runs_pick", ring[0])
    page.locator(f".st-key-runs_resume_to_{ring[0]} input").fill("200000")
    page.locator(f".st-key-runs_resume_to_{ring[0]} input").press("Tab")
    w.click("Resume", re.compile("^.?Resume$"))
    expect(page.get_by_text(re.compile(rf"{ring[0]} · running"))).to_be_visible(timeout=120_000)
    w.click("Stop", re.compile("^.?Stop$"))
    expect(page.get_by_text(re.compile(rf"{ring[0]} · stopped"))).to_be_visible(timeout=120_000)
    page.get_by_role("button", name=re.compile("Delete")).click()
    w.click("Delete", "Yes, delete it")
    expect(page.get_by_text(re.compile(rf"{ring[0]} · "))).to_have_count(0)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"dashboard_walk: needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="gancore-walk-") as tmp:
        root = args.root or Path(tmp) / "runs"
        root.mkdir(parents=True, exist_ok=True)
        port = args.port or free_port()
        proc = start_dashboard(root, port, Path(tmp) / "streamlit.log")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless",
                                                                            "--disable-gpu"])
                w = Walk(browser.new_page(viewport={"width": 1400, "height": 1100}), args.screenshots)
                try:
                    walk(w, f"http://localhost:{port}")
                finally:
                    browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print("| journey | page or action | seconds |")
    print("|---|---|---|")
    for journey, what, seconds in w.rows:
        print(f"| {journey} | {what} | {seconds:.2f} |")
    slowest = max(w.rows, key=lambda r: r[2])
    print(f"\n{len(w.rows)} page loads; slowest {slowest[2]:.2f} s ({slowest[0]}: {slowest[1]}); "
          f"median {sorted(r[2] for r in w.rows)[len(w.rows) // 2]:.2f} s")
    return 0 if slowest[2] <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
