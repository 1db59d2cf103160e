"""The explanation and the report, rendered by a real browser (headless Chromium).

Screenshots must be non-blank and show the highlight / plot colours in their pixels, and the DOM
after rendering must hold the highlights. Without Chromium these tests skip with the reason,
except when ``EHRTEXT_REQUIRE_BROWSER=1`` (CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from ehrtext.explain_html import highlight_color, render_explanation
from ehrtext.report import PALETTE, _blues, write_report

pytestmark = pytest.mark.browser

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--force-device-scale-factor=1",
)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("EHRTEXT_CHROMIUM") or next(
        (p for p in map(shutil.which, _CANDIDATES) if p), None
    )
    if path:
        return path
    why = (
        f"no headless Chromium found (looked for {', '.join(_CANDIDATES)} on PATH and "
        "$EHRTEXT_CHROMIUM); install it with `apt-get install -y chromium`"
    )
    if os.environ.get("EHRTEXT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"EHRTEXT_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


def _run(chromium: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium, *_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )


def _screenshot(chromium: str, page: Path, png: Path, size: str) -> np.ndarray:
    from PIL import Image

    proc = _run(chromium, f"--window-size={size}", f"--screenshot={png}", page.as_uri())
    assert png.is_file(), (
        f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-800:]}"
    )
    with Image.open(png) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def _dump_dom(chromium: str, page: Path) -> str:
    proc = _run(chromium, "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-800:]
    return proc.stdout


def _count_colour(pixels: np.ndarray, rgb, tol: int = 6) -> int:
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tol).sum())


def _assert_not_blank(pixels: np.ndarray) -> None:
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels.sum(axis=2) < 200).sum() > 500, "no dark (text) pixels in the screenshot"


NOTE = (
    "主诉：反复胸闷、胸痛3年，加重伴大汗2小时。\n"
    "现病史：患者3年前无明显诱因出现胸闷，活动后加重，休息后缓解。<script>alert(1)</script>\n"
    "既往史：高血压病史10年，否认糖尿病史。"
)


def test_explanation_renders_with_highlights(chromium, tmp_path):
    strong = NOTE.index("胸痛")
    mid = NOTE.index("大汗")
    weak = NOTE.index("高血压")
    spans = [(strong, strong + 2, 1.0), (mid, mid + 2, 0.5), (weak, weak + 3, 0.25)]
    page = tmp_path / "explanation.html"
    page.write_text(
        render_explanation(
            NOTE, spans, title="Why 急性冠脉综合征?", probabilities={"急性冠脉综合征": 0.91}
        ),
        encoding="utf-8",
    )
    plain = tmp_path / "plain.html"
    plain.write_text(render_explanation(NOTE, []), encoding="utf-8")

    pixels = _screenshot(chromium, page, tmp_path / "explanation.png", "900,600")
    _assert_not_blank(pixels)
    strong_px = _count_colour(pixels, highlight_color(1.0))
    mid_px = _count_colour(pixels, highlight_color(0.5))
    assert strong_px > 100, "the strongest highlight colour is missing from the pixels"
    assert mid_px > 100, "the middle highlight colour is missing from the pixels"
    # the page without spans has none of these colours (the legend's gradient aside, which is
    # a thin bar: compare the two pages rather than expect zero)
    base = _screenshot(chromium, plain, tmp_path / "plain.png", "900,600")
    assert _count_colour(base, highlight_color(1.0)) < strong_px / 4

    dom = _dump_dom(chromium, page)
    assert dom.count('<mark class="ehr-hl"') == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # shown as text, never run
    assert "<script>alert(1)" not in dom


def test_report_renders_plots(chromium, tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    z = rng.normal(size=(400, 4))
    z[np.arange(400), y] += 1.5
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    write_report(
        tmp_path,
        y_true=y,
        probs=p,
        task="multiclass",
        labels=["冠心病", "心衰", "房颤", "高血压"],
        n_bootstrap=100,
    )
    page = tmp_path / "report.html"
    pixels = _screenshot(chromium, page, tmp_path / "report.png", "1280,2400")
    _assert_not_blank(pixels)
    # the first two curve colours and the darkest confusion-matrix blue are drawn
    for colour in PALETTE[:2]:
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert _count_colour(pixels, rgb, tol=30) > 50, f"no {colour} curve pixels"
    # the confusion-matrix cell of the first class, in its exact fill colour (a 44 px square)
    row = np.bincount(p[y == 0].argmax(1), minlength=4)
    rgb = tuple(int(v) for v in re.findall(r"\d+", _blues(row[0] / row.sum())))
    assert _count_colour(pixels, rgb, tol=4) > 44 * 44 / 2, "no confusion-matrix cell pixels"
    dom = _dump_dom(chromium, page)
    assert dom.count("<polyline") == 10  # 4 ROC + micro, 4 PR + micro
    assert dom.count('class="cm"') == 16


def test_real_model_explanation_renders_with_highlights(chromium, tmp_path):
    """RiskModel.explain on the shipped demo model, drawn by render_explanation(explanation)."""
    pytest.importorskip("torch")
    from ehrtext.predict import RiskModel
    from ehrtext.resources import corpus_path

    model = RiskModel.load(corpus_path("models", "toyhom_im_departments"))
    ex = model.explain(NOTE, method="ig")
    page = tmp_path / "real.html"
    page.write_text(render_explanation(ex), encoding="utf-8")
    pixels = _screenshot(chromium, page, tmp_path / "real.png", "900,700")
    _assert_not_blank(pixels)
    # integrated gradients are signed: the strongest span is full red or full blue
    full = _count_colour(pixels, highlight_color(1.0)) + _count_colour(
        pixels, highlight_color(1.0, negative=True)
    )
    assert full > 50, "the strongest highlight is missing from the pixels"
    dom = _dump_dom(chromium, page)
    marks = re.findall(r'<mark class="ehr-hl" data-start="(\d+)" data-end="(\d+)"', dom)
    assert len(marks) >= 10
    spans = {(s, e) for s, e, _ in ex.spans()}
    covered = [(int(s), int(e)) for s, e in marks]
    assert all(any(a <= s and e <= b for a, b in spans) for s, e in covered)
    assert f"Why {ex.label}? (ig)" in dom
