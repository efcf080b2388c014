"""The HTML report renders in headless Chromium with every inlined figure loaded (slow; needs chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from robustlab.reports.render import render_run

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run-a"
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var out = document.createElement("div");
  out.id = "imgcheck";
  out.textContent = "IMGCHECK " + ok + "/" + imgs.length;
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_html_loads_every_figure_in_chromium(tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium installed (apt-get install -y chromium)")
    run = tmp_path / "fixture" / "run"
    shutil.copytree(FIXTURE, run)
    render_run(run)
    html = (run / "report.html").read_text()
    n_figures = len(list((run / "figures").glob("*.png")))
    # the probe goes into a copy: the report itself carries no script
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    res = headless(browser, tmp_path / "profile1", "--dump-dom", probe.as_uri())
    found = re.findall(r"IMGCHECK (\d+)/(\d+)", res.stdout)
    assert found, res.stderr[-2000:]
    ok, total = map(int, found[-1])
    assert total == n_figures >= 5 and ok == total
    shot = tmp_path / "report.png"
    headless(
        browser,
        tmp_path / "profile2",
        f"--screenshot={shot}",
        "--window-size=1200,2400",
        (run / "report.html").as_uri(),
    )
    assert shot.is_file() and shot.stat().st_size > 10_000
