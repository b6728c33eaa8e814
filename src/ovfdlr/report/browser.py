"""Loading a report in headless Chromium: did every image load, did any script fail, and a
screenshot of the page.

The report carries a small inline script that records script errors and, on the page's
``load`` event, counts the ``img`` elements that decoded (``complete && naturalWidth > 0``); it
writes the results as ``data-*`` attributes of the hidden element ``#report-check``.
:func:`check_report` runs ``chromium --headless --dump-dom`` on the file and reads them back
from the serialised DOM; :func:`take_screenshot` runs ``chromium --headless --screenshot``. Each
call uses a fresh, temporary browser profile and no network services.

Chromium is Debian's ``chromium`` package (``/usr/bin/chromium``); ``$OVFDLR_CHROMIUM`` names
another binary. Its WebDriver (``chromedriver``, Debian's ``chromium-driver``) is found the same
way (``$OVFDLR_CHROMEDRIVER``). :data:`INSTALL_COMMAND` installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

DEFAULT_BINARY = "/usr/bin/chromium"
DEFAULT_DRIVER = "/usr/bin/chromedriver"
# the one line that installs the browser and its WebDriver on Debian and Ubuntu
INSTALL_COMMAND = "sudo apt-get update && sudo apt-get install -y chromium chromium-driver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


class BrowserError(RuntimeError):
    """Chromium is missing, failed or did not finish; the message says which and how to fix it."""


@dataclass
class BrowserCheck:
    """What a headless browser saw when it loaded a report."""

    images_total: int
    images_loaded: int
    script_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    primary_top: int | None = None  # page pixels from the top to the primary endpoint's box
    primary_bottom: int | None = None
    page_height: int | None = None  # the whole page's height in pixels
    page_width: int | None = None  # the window's width the page was laid out in

    @property
    def ok(self) -> bool:
        """Every image loaded and no script failed."""
        return self.images_loaded == self.images_total and not self.script_errors


def find_chromium() -> str:
    """The Chromium binary: ``$OVFDLR_CHROMIUM``, ``/usr/bin/chromium`` or one on the PATH.

    Raises :class:`BrowserError` naming :data:`INSTALL_COMMAND` when there is none.
    """
    return _find("OVFDLR_CHROMIUM", DEFAULT_BINARY, ("chromium", "chromium-browser"), "chromium")


def find_chromedriver() -> str:
    """Chromium's WebDriver: ``$OVFDLR_CHROMEDRIVER``, ``/usr/bin/chromedriver`` or one on the
    PATH. Raises :class:`BrowserError` naming :data:`INSTALL_COMMAND` when there is none."""
    return _find("OVFDLR_CHROMEDRIVER", DEFAULT_DRIVER, ("chromedriver",), "chromium-driver")


def _find(variable: str, default: str, names: tuple[str, ...], package: str) -> str:
    """The executable named by ``$variable``, else ``default``, else the first of ``names`` on
    the PATH."""
    named = os.environ.get(variable)
    if named:
        if shutil.which(named):
            return named
        raise BrowserError(
            f"{variable}={named} is not an executable: point it at {names[0]}, or unset it "
            f"and install the Debian package '{package}' ({INSTALL_COMMAND})"
        )
    if os.access(default, os.X_OK):
        return default
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError(
        f"{names[0]} not found: install the Debian package '{package}' ({INSTALL_COMMAND}) "
        f"or set {variable} to its binary"
    )


def _run(arguments: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run Chromium with the common flags and a new temporary profile; kill it on timeout."""
    binary = find_chromium()
    with tempfile.TemporaryDirectory(prefix="ovfdlr-chromium-") as profile:
        command = [binary, *FLAGS, f"--user-data-dir={profile}", *arguments]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise BrowserError(f"Chromium did not finish within {timeout:g} s") from exc
    if process.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise BrowserError(f"Chromium failed (exit {process.returncode}):\n{tail}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _url(html: Path) -> str:
    html = Path(html)
    if not html.is_file():
        raise FileNotFoundError(f"report not found: {html}")
    return html.resolve().as_uri()


class _CheckElement(HTMLParser):
    """Finds the attributes of the element with id ``element``."""

    def __init__(self, element: str) -> None:
        super().__init__()
        self.element = element
        self.attributes: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if values.get("id") == self.element and self.attributes is None:
            self.attributes = values


def parse_check(dom: str) -> tuple[int, int, list[str]]:
    """Images total, images loaded and script errors from a dumped DOM of a report."""
    found = _check_attributes(dom)
    if found.get("data-ready") != "1":
        return 0, 0, ["the report's check script did not run to the page's load event"]
    errors = json.loads(found.get("data-script-errors") or "[]")
    return int(found["data-images-total"]), int(found["data-images-loaded"]), list(errors)


def parse_layout(dom: str) -> dict[str, int | None]:
    """Where the page put the primary endpoint's box (``primary_top``, ``primary_bottom``, in
    page pixels) and the page's ``page_height`` and ``page_width``; None where not recorded."""
    found = _check_attributes(dom)
    names = ("primary_top", "primary_bottom", "page_height", "page_width")
    values = {n: found.get("data-" + n.replace("_", "-")) for n in names}
    return {n: int(v) if v not in (None, "") else None for n, v in values.items()}


def _check_attributes(dom: str) -> dict[str, str]:
    # imported here: finding the browser (as the test suite does first) needs no report code
    from ovfdlr.report.html import CHECK_ELEMENT

    parser = _CheckElement(CHECK_ELEMENT)
    parser.feed(dom)
    if parser.attributes is None:
        raise BrowserError(f"the page has no #{CHECK_ELEMENT} element: not an ovfdlr report")
    return parser.attributes


def take_screenshot(
    html: Path,
    png: Path,
    *,
    width: int = 1400,
    height: int = 2000,
    timeout: float = 120,
    palette: bool = False,
) -> Path:
    """A ``width`` x ``height`` screenshot of the top of the page at ``html``, written to ``png``.

    ``palette=True`` reduces it to a 256-colour PNG (a fraction of the size, for documentation).
    """
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    url = _url(html)
    _run([f"--window-size={width},{height}", f"--screenshot={png.resolve()}", url], timeout)
    if not png.is_file():
        raise BrowserError(f"Chromium wrote no screenshot to {png}")
    if palette:
        from PIL import Image

        with Image.open(png) as image:
            reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        reduced.save(png, optimize=True)
    return png


def check_report(
    html: Path,
    screenshot: Path | None = None,
    *,
    timeout: float = 120,
    width: int = 1400,
    height: int = 900,
) -> BrowserCheck:
    """Load a report in headless Chromium in a ``width`` x ``height`` window; count loaded
    images, collect script errors, record where the primary endpoint lies and how long the
    page is, and take a screenshot of the top of the page (``width`` x 2000) when
    ``screenshot`` names a PNG file."""
    url = _url(html)
    result = _run([f"--window-size={width},{height}", "--dump-dom", url], timeout)
    total, loaded, errors = parse_check(result.stdout)
    layout = parse_layout(result.stdout)
    shot = None
    if screenshot is not None:
        shot = take_screenshot(html, screenshot, width=width, timeout=timeout)
    return BrowserCheck(total, loaded, errors, shot, **layout)
