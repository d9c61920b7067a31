"""The html report in a real browser: headless Chromium (Debian's ``chromium``) renders the graph.

The page must be one self-contained file: Chromium runs with networking features off, the DOM it
dumps has every node of the environment as an SVG group with a ``data-status``, and the screenshot
is a real picture, not a blank page. Without Chromium the test fails: it is part of the contract.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from harness import Env, describe, intrude

pytestmark = pytest.mark.e2e

NODES = ("layer.platform", "layer.app", "stack.network", "stack.database", "stack.files")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed: apt-get install -y chromium", pytrace=False)


def browse(report: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp / 'profile'}",
            "--window-size=1200,900",
            *extra,
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def test_the_html_report_renders_the_graph_in_headless_chromium(applied: Env, tmp_path: Path) -> None:
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    report = tmp_path / "drift.html"
    proc = applied.drift("--format", "html", "--output", str(report))
    assert proc.returncode == 2, describe(proc)
    page = report.read_text()
    assert not re.search(r"""(src|href)=["']?https?://""", page), "the page loads something from the network"

    dom = browse(report, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-3000:]
    groups = re.findall(r'<g class="node" data-node="([^"]+)" data-status="([^"]+)"', dom.stdout)
    status = dict(groups)
    assert set(status) == set(NODES), f"nodes in the DOM: {groups}"
    assert status["layer.app"] == "drifted"
    assert {status[n] for n in NODES if n != "layer.app"} == {"in-sync"}
    assert dom.stdout.count('class="edge"') >= 3, "the dependency edges are drawn"
    assert "<svg" in dom.stdout and "intruder" in dom.stdout

    shot = tmp_path / "drift.png"
    pic = browse(report, tmp_path, f"--screenshot={shot}")
    assert pic.returncode == 0, pic.stderr[-3000:]
    assert shot.is_file(), pic.stderr[-3000:]
    assert png_size(shot) == (1200, 900)
    # A blank white page compresses to a few kilobytes; the graph, table and text do not.
    assert shot.stat().st_size > 20_000, shot.stat().st_size
