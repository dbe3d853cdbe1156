"""report.html as a page in a real headless browser (Debian's chromium, installed by scripts/setup), after three
runs: it renders, the funnel and trend charts are drawn, and nothing runs off it at 1,400 px.

The screenshot is of the report as written (no script). The widths are measured on a copy with one inline script
added, whose answer ``--dump-dom`` prints: the report itself stays script-free."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from helpers import latest, make_project

CHROMIUM = shutil.which("chromium")
WIDTH = 1400
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup "
                                                         "installs it): no headless browser to render report.html")
MEASURE = ("<script>(function(){var t=document.querySelector('table.fleet').getBoundingClientRect();"
           "var s=document.querySelector('svg.trend');document.body.setAttribute('data-measured',JSON.stringify("
           "{page:document.documentElement.scrollWidth,fleet:Math.ceil(t.right),"
           "trend:s?Math.ceil(s.getBoundingClientRect().right):-1}));})();</script>")


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--disable-dev-shm-usage",
                           f"--user-data-dir={profile}", f"--window-size={WIDTH},2000", *args],
                          check=False, capture_output=True, text=True, timeout=120)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB pixels of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + a) & 255
            elif kind == 2:
                row[i] = (row[i] + b) & 255
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(row))
        prev = row
    return width, height, [[r[i:i + 3] for i in range(0, len(r), bpp)] for r in rows]


def test_the_report_renders_in_a_browser_with_its_charts_and_fits_1400_px(pytester, monkeypatch, tmp_path):
    make_project(pytester)
    monkeypatch.setenv("SAMPLE_AMT_PASSWORD", "Sup3r-Secret-Value")
    for faults in ({"T1-CLIENT": ["pc02.sample.test"]}, {"T2-CLIENT": ["pc01.sample.test", "pc03.sample.test"]},
                   {"T1-CLIENT": ["pc03.sample.test"]}):
        (pytester.path / "environments" / "faults.json").write_text(json.dumps(faults))
        pytester.runpytest_subprocess("--env", "sample", "--stage", "3", "-p", "no:randomly", "-p", "no:allure_pytest")
    run_dir = latest(pytester)
    page = run_dir / "report.html"
    assert len(json.loads((run_dir / "summary.json").read_text())["history"]["trend"]) == 3

    shot = tmp_path / "report.png"
    done = chromium(tmp_path / "profile", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, 2000)
    colours = {px for row in rows[::2] for px in row[::2]}
    assert len(colours) > 10, "a blank page"
    assert bytes.fromhex("2e7d32") in colours and bytes.fromhex("c62828") in colours  # the charts' green and red

    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = chromium(tmp_path / "profile2", "--dump-dom", measured.as_uri()).stdout
    assert "data-measured=" in dom, dom[-2000:]
    sizes = json.loads(dom.split('data-measured="', 1)[1].split('"', 1)[0].replace("&quot;", '"'))
    assert sizes["page"] <= WIDTH and sizes["fleet"] <= WIDTH, sizes  # nothing runs off the page
    assert 0 < sizes["trend"] <= WIDTH, sizes
