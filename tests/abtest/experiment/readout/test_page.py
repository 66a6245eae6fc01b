"""The readout page in a real headless Chromium: every section present, every figure decodes, nothing overflows.

Chromium is the distribution's package (Debian ``chromium``). Missing, the test skips on a workstation and fails in
CI (``CI`` set), so the browser check cannot silently stop running there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from abtest.experiment.plan import AnalysisPlan
from abtest.experiment.readout.experiment import ReadoutInputs, analyse_records, records_config
from abtest.experiment.readout.page import FILES, SECTIONS, write_readout

VIEWPORT_WIDTH = 1280
# Appended to a copy of the page: what the browser measured, written into the DOM that --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const wide = [...document.querySelectorAll("section")].filter(s => s.getBoundingClientRect().right > WIDTH);
  const result = {
    scrollWidth: document.documentElement.scrollWidth,
    sections: [...document.querySelectorAll("section")].map(s => s.id),
    images: images.length,
    decoded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    wideSections: wide.map(s => s.id),
    firstText: document.querySelector("section").innerText.slice(0, 200),
  };
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>""".replace("WIDTH", str(VIEWPORT_WIDTH))


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (apt-get install -y --no-install-recommends chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _measure(page: Path, tmp_path: Path) -> dict:
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={VIEWPORT_WIDTH},900",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run; chromium printed {dom[:500]!r}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.parametrize("drop_b_every", [0, 20], ids=["healthy", "srm"])
def test_page_renders_in_chromium(tmp_path, user_days, pre_period, drop_b_every):
    frame = user_days(n_users=24_000 if drop_b_every else 3000, days=7, drop_b_every=drop_b_every, seed=2)
    plan = AnalysisPlan(planned_days=7)
    config = records_config(plan, split=0.5, users=frame["user_id"].nunique(), days_observed=7)
    readout = analyse_records(ReadoutInputs(frame, latency_p50_ms={"A": 4.0, "B": 4.4}), plan, config, pre_period)
    paths = write_readout(readout, tmp_path / "readout")
    assert [p.name for p in paths] == list(FILES) and all(p.stat().st_size > 0 for p in paths)
    measured = _measure(tmp_path / "readout" / "readout.html", tmp_path)
    assert measured["sections"] == list(SECTIONS)
    assert measured["images"] == 2 and measured["decoded"] == 2
    assert measured["scrollWidth"] <= VIEWPORT_WIDTH and measured["wideSections"] == []
    if drop_b_every:
        assert measured["firstText"].startswith("A health check failed")
        assert "Do not trust this result" in measured["firstText"]
    else:
        assert measured["firstText"].startswith("Ship policy B")
