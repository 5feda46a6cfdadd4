"""Headless Chromium helpers for the report's browser test.

Chromium is driven through its command line only (no webdriver), so the test
needs nothing beyond the browser binary itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Written into a copy of the page: once everything has loaded, record how many
# <img> elements decoded to a real image, where --dump-dom can show it.
_COUNT_IMAGES_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = document.getElementsByTagName("img"), loaded = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { loaded++; }
  }
  document.body.setAttribute("data-images-loaded", String(loaded));
  document.body.setAttribute("data-images-total", String(imgs.length));
});
</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: $CHROMIUM if set, else the first on PATH."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run_chromium(chromium: str, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a throwaway profile so parallel runs do not collide."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(chromium: str, html_path: str | os.PathLike, png_path: str | os.PathLike,
               width: int = 1280, height: int = 4000) -> None:
    """Render the page to a PNG; raises if Chromium wrote nothing."""
    png_path = Path(png_path)
    result = _run_chromium(
        chromium,
        [f"--screenshot={png_path}", f"--window-size={width},{height}",
         "--virtual-time-budget=5000", Path(html_path).resolve().as_uri()],
    )
    if not png_path.is_file() or png_path.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}")


def dump_dom_after(chromium: str, html_path: str | os.PathLike, script: str = "", query: str = "") -> str:
    """The DOM Chromium holds after the page's own scripts and then ``script`` ran.

    ``script`` (JavaScript, may be empty) is appended to a copy of the page just before
    ``</body>``, so it runs after the page's scripts; ``query`` ("?sort=id") is added to
    the page's URL.
    """
    page = Path(html_path).read_text(encoding="utf-8")
    if script:
        page = page.replace("</body>", f"<script>{script}</script></body>", 1)
    with tempfile.TemporaryDirectory(prefix="report-probe-") as tmp:
        probe_path = Path(tmp) / "probe.html"
        probe_path.write_text(page, encoding="utf-8")
        result = _run_chromium(chromium, ["--dump-dom", "--virtual-time-budget=5000", probe_path.as_uri() + query])
    if "</html>" not in result.stdout:
        raise RuntimeError(f"chromium dumped no DOM (exit {result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def count_loaded_images(chromium: str, html_path: str | os.PathLike) -> tuple[int, int]:
    """(images that loaded, <img> elements) as seen by Chromium after the load event."""
    page = Path(html_path).read_text(encoding="utf-8")
    probe = page.replace("</body>", _COUNT_IMAGES_SCRIPT + "</body>", 1)
    with tempfile.TemporaryDirectory(prefix="report-probe-") as tmp:
        probe_path = Path(tmp) / "probe.html"
        probe_path.write_text(probe, encoding="utf-8")
        result = _run_chromium(
            chromium, ["--dump-dom", "--virtual-time-budget=5000", probe_path.as_uri()]
        )
    loaded = re.search(r'data-images-loaded="(\d+)"', result.stdout)
    total = re.search(r'data-images-total="(\d+)"', result.stdout)
    if not loaded or not total:
        raise RuntimeError(
            f"chromium's DOM dump lacks the image counts (exit {result.returncode}): "
            f"{result.stderr[-2000:]}"
        )
    return int(loaded.group(1)), int(total.group(1))
