"""Headless Chromium for the report: a screenshot of ``report.html`` and its DOM after scripts ran.

The browser is found by :func:`find_browser` (``$DPS_BROWSER``, else ``/usr/bin/chromium``, else
``chromium``, ``chromium-browser`` or ``google-chrome`` on ``PATH``). Every call starts a fresh
browser with its own temporary profile and with background networking off, so it works on a
machine with no network (install it with ``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["BROWSER_FLAGS", "dump_dom", "find_browser", "screenshot"]

#: Flags of every headless run (a fresh ``--user-data-dir`` is added per call).
BROWSER_FLAGS: list[str] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
_INSTALL_HINT = (
    "no Chromium found: set DPS_BROWSER to a Chromium/Chrome executable, or install it "
    "(Debian/Ubuntu: `apt-get install chromium`)"
)


def find_browser() -> str | None:
    """The Chromium executable to use, or None when there is none.

    ``$DPS_BROWSER`` (a path or a name on ``PATH``) wins when set; then ``/usr/bin/chromium``;
    then ``chromium``, ``chromium-browser``, ``google-chrome`` on ``PATH``. A ``$DPS_BROWSER``
    that names no executable gives None (it is not silently replaced by another browser).
    """
    env = os.environ.get("DPS_BROWSER", "").strip()
    if env:
        return shutil.which(env)
    if os.access("/usr/bin/chromium", os.X_OK) and Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _require_browser() -> str:
    browser = find_browser()
    if browser is None:
        env = os.environ.get("DPS_BROWSER", "").strip()
        if env:
            raise RuntimeError(f"DPS_BROWSER={env!r} is not an executable; unset it or fix it "
                               "(Debian/Ubuntu: `apt-get install chromium`)")
        raise RuntimeError(_INSTALL_HINT)
    return browser


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(args: list[str], url: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the browser headless with ``args`` on ``url`` and a fresh profile; raise on failure."""
    browser = _require_browser()
    with tempfile.TemporaryDirectory(prefix="dps-chromium-") as profile:
        cmd = [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args, url]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
            raise RuntimeError(f"{browser} timed out after {timeout:g} s on {url}\n"
                               f"stderr (tail):\n{_tail(err or '')}") from exc
        except OSError as exc:
            raise RuntimeError(f"could not start {browser}: {exc}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"{browser} failed (exit {done.returncode}) on {url}\n"
                           f"stderr (tail):\n{_tail(done.stderr)}")
    return done


def _url(html: Path) -> str:
    page = Path(html).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"no such page: {page}")
    return page.as_uri()


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 2000, timeout: float = 60.0) -> Path:
    """Render ``html`` in headless Chromium at ``width`` x ``height`` CSS pixels into ``png``.

    Returns ``png``. Raises RuntimeError (naming the browser, with its stderr tail) when the
    browser fails, times out or writes no image, and when no browser is installed.
    """
    url = _url(html)
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    done = _run(["--hide-scrollbars", f"--window-size={int(width)},{int(height)}",
                 f"--screenshot={png}"], url, timeout)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"{find_browser()} wrote no screenshot to {png}\n"
                           f"stderr (tail):\n{_tail(done.stderr)}")
    return png


def dump_dom(html: Path, timeout: float = 60.0, virtual_time_budget_ms: int = 2000) -> str:
    """The DOM of ``html`` serialized after its scripts ran (load handlers included).

    ``virtual_time_budget_ms`` lets timers and pending loads settle first (virtual time: it
    costs little real time). Raises RuntimeError like :func:`screenshot`.
    """
    url = _url(html)
    done = _run([f"--virtual-time-budget={int(virtual_time_budget_ms)}", "--dump-dom"], url, timeout)
    if not done.stdout.strip():
        raise RuntimeError(f"{find_browser()} dumped an empty DOM for {url}\n"
                           f"stderr (tail):\n{_tail(done.stderr)}")
    return done.stdout
