"""``llmmeter report top --html``: the page opens in headless Chromium (Debian's ``chromium``) with no network,
and the browser lays out every chart element the data calls for (counted by hand from test_report.CALLS)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from llmmeter.ledger import FILE_NAME
from llmmeter.ledger.writer import connect
from test_report import CALLS, ledger_row

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _ledger(directory: Path) -> None:
    conn = connect(directory / FILE_NAME)
    for call in CALLS:
        row = ledger_row(call)
        conn.execute(f"INSERT INTO llm_calls ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                     tuple(row.values()))
    conn.close()


def test_html_page_renders_its_charts_in_chromium(tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (scripts/system-deps.sh installs it)"
    _ledger(tmp_path)
    page = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "llmmeter.cli", "report", "top", "--by", "user", "--ledger",
                             str(tmp_path), "--html", str(page)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert "<script src" not in text and "http://" not in text and "https://" not in text  # self-contained

    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    drawn = dict(re.findall(r'data-chart="(\w+)"[^>]*data-drawn="(\d+)"', dom))
    # daily: 11-26 u1 + u2, 11-27 u1, 11-28 u2 (u3's call is unpriced, $0: no bar) = 4 bars;
    # top: u1, u2, u3 = 3 bars; tokens: p50 and p95 for /chat, /search, /agent = 6 bars.
    assert drawn == {"daily": "4", "top": "3", "tokens": "6"}
    assert 'data-charts-drawn="3:13"' in dom

    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=840,1100",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
