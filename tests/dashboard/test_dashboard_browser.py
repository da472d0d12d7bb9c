"""The dashboard in a real browser: Debian's Chromium driven by Selenium (Debian's chromedriver), against a
live cluster of 3 masters behind Toxiproxy with 2 kubelets, and the dashboard started the way
`hacluster up --dashboard` starts it. Screenshots go to out/test-artifacts/dashboard/."""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.network import start_network
from hacluster.cli.dashboard_cmd import URL_PREFIX, start_detached
from hacluster.cluster import launcher
from hacluster.config import default_config
from tests.support import wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "out" / "test-artifacts" / "dashboard"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
need_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver: run scripts/install-chromium (scripts/setup --test does)")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1600,1300", "--hide-scrollbars")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[launcher.ClusterHandle, str]]:
    sd = tmp_path_factory.mktemp("dash") / "sd"
    handle = launcher.up(default_config(3), sd, nodes=2, network=start_network)
    try:
        url = start_detached(handle)
        yield handle, url
    finally:
        dashboard_pid = handle.pid("dashboard")
        stopped = launcher.down(sd)
    # `hacluster down` stops the dashboard with the rest of the cluster (as `up --dashboard` relies on).
    assert dashboard_pid in stopped and not launcher.pid_alive(dashboard_pid)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hacluster-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM or ""
    for arg in CHROMIUM_ARGS:
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or ""), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# The page redraws itself on every snapshot, so what a test reads is read in one script run (atomic in the
# page's thread), and a click on an element redrawn under it is tried again.
_ROWS_JS = """return Array.from(document.querySelectorAll('#master-table tbody tr')).map(tr =>
  [tr.dataset.master, tr.dataset.role, tr.children[2].textContent]);"""


def _rows(driver: Any) -> dict[str, dict[str, str]]:
    """The masters table as the page shows it: id -> role, term."""
    return {mid: {"role": role, "term": term} for mid, role, term in driver.execute_script(_ROWS_JS)}


def _leader(rows: dict[str, dict[str, str]]) -> tuple[str, int] | None:
    leaders = [(mid, int(r["term"])) for mid, r in rows.items() if r["role"] == "leader"]
    return leaders[0] if len(leaders) == 1 else None


def _click(driver: Any, css: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return True
        except StaleElementReferenceException:
            return False

    wait_for(attempt, 5, f"a click on {css}")


def _js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


def _shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_the_command_prints_its_url_first_and_refuses_requests_without_the_token(cluster: Any) -> None:
    handle, url = cluster
    first = (handle.state_dir / "logs" / "dashboard.log").read_text().splitlines()[0]
    assert first == f"{URL_PREFIX}{url}"
    base = url.split("/?token=")[0]
    for path in ("/", "/api/state", "/static/app.js"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + path, timeout=5)
        assert err.value.code == 401


@need_chromium
def test_kill_the_leader_from_the_page_and_bring_it_back(cluster: Any, browser: Any) -> None:
    handle, url = cluster
    browser.get(url)
    rows = wait_for(lambda: (r := _rows(browser)) and len(r) == 3 and _leader(r) and r, 15,
                    "three masters and one leader on the page")
    old, old_term = _leader(rows)  # type: ignore[misc]
    assert "leader" in _js(browser, "return document.getElementById('summary').textContent;")
    _shot(browser, "1-three-masters")

    _click(browser, '#faults button[data-action="kill"][data-target="leader"]')
    clicked = time.monotonic()
    # A new leader in a higher term, and the killed master shown down, within 3 s of the click.
    wait_for(lambda: (r := _rows(browser)) and (ld := _leader(r)) and ld[0] != old and ld[1] > old_term
             and r[old]["role"] == "down", 3.0, f"a new leader after killing {old}")
    took = time.monotonic() - clicked
    _shot(browser, "2-leader-killed")
    timeline = _js(browser, "return document.getElementById('timeline-list').textContent;")
    assert f"kill-leader on {old}" in timeline and "became leader" in timeline, timeline

    _click(browser, f'#master-table button[data-action="restart"][data-target="{old}"]')
    wait_for(lambda: _rows(browser).get(old, {}).get("role") == "follower", 30,
             f"{old} back as a follower after restart")
    print(f"new leader on the page {took:.2f} s after the click")


@need_chromium
def test_a_partition_is_drawn_from_toxiproxy_and_healed(cluster: Any, browser: Any) -> None:

    handle, url = cluster
    browser.get(url)
    wait_for(lambda: _leader(_rows(browser)), 15, "a leader on the page")
    _click(browser, '#faults button[data-action="split"][data-target="even"]')

    def cut_links() -> int:
        return int(_js(browser, "return Array.from(document.querySelectorAll('#graph text'))"
                                ".filter(t => t.textContent === '✕ cut').length;"))

    wait_for(lambda: cut_links() >= 1, 5, "a cut link drawn on the graph")
    _shot(browser, "3-split")
    _click(browser, '#faults button[data-action="heal"]')
    wait_for(lambda: cut_links() == 0 and _leader(_rows(browser)), 15, "every link healthy again")


@need_chromium
def test_pods_from_templates_reach_their_states_and_the_flow_shows_every_step(cluster: Any, browser: Any) -> None:

    handle, url = cluster
    browser.get(url)
    wait_for(lambda: _leader(_rows(browser)), 15, "a leader on the page")

    def status_of(prefix: str) -> str:
        return str(_js(browser, f"const tr = document.querySelector('#pod-table tr[data-pod^=\"{prefix}\"]');"
                                "return tr ? tr.dataset.status : '';"))

    _click(browser, 'button[data-template="crashloop"]')
    _click(browser, 'button[data-template="sleeper"]')
    wait_for(lambda: status_of("sleeper-") == "Running", 30, "the sleeping pod Running")
    wait_for(lambda: status_of("crashloop-") == "CrashLoopBackOff", 60, "the crash-looping pod in CrashLoopBackOff")
    # The counts arrive with the page's state stream, the table from its own request: either may be first.
    wait_for(lambda: _js(browser, "const c = document.querySelector('#pod-counts .chip[data-status=\"CrashLoopBackOff\"]');"
                                  "return c ? c.textContent : '';") == "CrashLoopBackOff1", 10,
             "the CrashLoopBackOff count chip")

    _click(browser, '#pod-table tr[data-pod^="sleeper-"] a.pod')

    def steps() -> list[tuple[str, str]]:
        return [tuple(x) for x in _js(browser, "return Array.from(document.querySelectorAll('#flow rect[data-step]'))"
                                               ".map(r => [r.dataset.step, r.dataset.state]);")]

    wait_for(lambda: len(steps()) == 9, 10, "the flow view of the running pod")
    assert steps() == [(s, "done") for s in (
        "create requested", "request accepted", "proposed and committed", "scheduler decision", "binding committed",
        "kubelet picked it up", "image pulled", "containers created and started", "Ready")]
    _shot(browser, "4-pods-and-flow")


@need_chromium
def test_pause_and_resume_a_follower_from_the_page(cluster: Any, browser: Any) -> None:
    handle, url = cluster
    browser.get(url)
    rows = wait_for(lambda: (r := _rows(browser)) and _leader(r) and r, 15, "a leader on the page")
    follower = sorted(mid for mid, r in rows.items() if r["role"] == "follower")[0]
    _click(browser, f'#master-table button[data-action="pause"][data-target="{follower}"]')
    wait_for(lambda: _rows(browser).get(follower, {}).get("role") == "paused", 5, f"{follower} shown paused")
    pid = handle.pid(follower)
    assert pid is not None and Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "T"
    _click(browser, f'#master-table button[data-action="resume"][data-target="{follower}"]')
    wait_for(lambda: _rows(browser).get(follower, {}).get("role") == "follower", 15, f"{follower} resumed")


@need_chromium
def test_a_cluster_on_the_unsafe_engine_is_marked_unsafe_in_the_header(cluster: Any, browser: Any,
                                                                       tmp_path: Path) -> None:
    from hacluster.config import parse_config

    _, safe_url = cluster
    browser.get(safe_url)
    wait_for(lambda: len(_rows(browser)) == 3, 15, "the masters on the page")
    assert _js(browser, "return document.getElementById('unsafe').hidden;") is True

    base = default_config(2).model_dump(mode="json")
    cfg = parse_config({**base, "store": {"engine": "unsafe-async-primary",
                                          "unsafe_async_primary": {"loses_acknowledged_writes": True}}})
    sd = tmp_path / "unsafe"
    handle = launcher.up(cfg, sd)
    try:
        browser.get(start_detached(handle))
        wait_for(lambda: _js(browser, "const u = document.getElementById('unsafe'); "
                                      "return !u.hidden && u.offsetWidth > 0;"), 15, "the UNSAFE mark")
        assert "unsafe-async-primary" in _js(browser, "return document.getElementById('unsafe').title;")
        _shot(browser, "unsafe-engine-marked")
    finally:
        launcher.down(sd)
