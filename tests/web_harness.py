"""Helpers for the web page's tests: a real `avid web` process and headless Debian chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from control_harness import ROOT

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "AVID_STATE_DIR"}


def set_password(config: Path, user: str = "admin", password: str = PASSWORD) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon", "web-passwd", user, "--config", str(config)],
                          cwd=ROOT, env={**env(), "AVID_WEB_PASSWORD": password}, capture_output=True,
                          text=True, timeout=60)


class WebProcess:
    """``avid web --config CONFIG`` (or, with ``slim``, ``python -m daemon.web`` as the unit runs it)
    in a subprocess; its log lines collect in :attr:`log`."""

    def __init__(self, config: Path, port: int, slim: bool = False, scheme: str = "http"):
        self.config, self.port = config, port
        self.module, self.args = ("daemon.web", []) if slim else ("daemon", ["web"])
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.lines: list[str] = []

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-m", self.module, *self.args, "--config", str(self.config)],
                                        cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"avid web exited {self.process.returncode}: {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"avid web did not listen within 30 s: {self.log}")

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=5)

    @property
    def log(self) -> str:
        return "".join(self.lines)


def http(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None,
         context=None):
    """``(status, body, headers)`` of one request; redirects are not followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


class Browser:
    """Headless Debian chromium driven by Selenium, offline (no Google host is reachable)."""

    def __enter__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ["SE_OFFLINE"] = "1"  # Selenium Manager must not try to download a driver
        self.profile = tempfile.mkdtemp(prefix="avid-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-extensions", "--window-size=1100,900",
                     f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(30)
        return self.driver

    def __exit__(self, *exc):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def browser_available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()
