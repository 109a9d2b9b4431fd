"""The report page in a real browser: headless Chromium driven by Playwright (the ``dev``
extra), with the system's ``chromium`` (``playwright install`` is not needed). Used by the tests,
the report benchmark and people who want to see a page as a radiologist would::

    python -m a0verify.report.browser DIR/report.html shot.png

which opens the page offline, waits until the 3-D view and the slice scroller are drawn, hovers
and clicks the tumour (margin readout, pinned point, slices moved there) and writes a screenshot.
WebGL runs in software (SwiftShader) when there is no GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Chromium flags: no sandbox (containers, root), software WebGL without a GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader"]
READY = "body[data-a0v-ready='1']"


def find_chromium() -> str | None:
    """Path of a Chromium executable on PATH (Debian's ``chromium``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``); RuntimeError naming what is missing."""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("no chromium on PATH (Debian package `chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise RuntimeError("Playwright is not installed (pip install -e '.[dev]')") from None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Any, html: Path, width: int = 1400, height: int = 1100,
              timeout_ms: float = 60_000) -> tuple[Any, float]:
    """Open ``html`` and wait until its interactive views are drawn. Returns (page, ms from
    navigation start until the page marked itself ready)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(Path(html).resolve().as_uri())
    page.wait_for_selector(READY, timeout=timeout_ms)
    return page, float(page.evaluate(
        "performance.getEntriesByName('a0v-ready')[0].startTime"))


def pick_tumour(page: Any) -> str:
    """Hover, then click, the middle of the 3-D view (the tumour, its thinnest side facing the
    camera); returns the hover tooltip's text."""
    box = page.locator("#a0v-3d canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(cx + 4, cy + 3)
    page.mouse.move(cx, cy)
    page.wait_for_function("document.getElementById('a0v-3d-tip').style.display === 'block'",
                           timeout=10_000)
    return str(page.locator("#a0v-3d-tip").inner_text())


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 1250) -> dict[str, Any]:
    """Screenshot of the top of the page (verdict, method tag, the interactive views) after a
    hover and a click on the tumour. Returns what was seen: ready time, tooltip, pinned text."""
    with chromium() as browser:
        page, ready_ms = open_page(browser, html, width, height)
        tip = pick_tumour(page)
        info = page.locator("#a0v-3d-info").inner_text()
        page.screenshot(path=str(png))
        page.close()
    return {"ready_ms": ready_ms, "tooltip": tip, "picked": info}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path, help="a report.html")
    ap.add_argument("png", type=Path, help="screenshot to write")
    ap.add_argument("--size", default="1400x1250", help="viewport WIDTHxHEIGHT (px)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    if not args.html.is_file():
        print(f"{args.html}: no such file", file=sys.stderr)
        return 2
    try:
        seen = screenshot(args.html, args.png, w, h)
    except RuntimeError as exc:
        print(f"cannot open a browser: {exc}", file=sys.stderr)
        return 2
    print(f"{args.png}: page ready after {seen['ready_ms'] / 1000:.2f} s; hover read "
          f"{seen['tooltip']!r}; {seen['picked']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
