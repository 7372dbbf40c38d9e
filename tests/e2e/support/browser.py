"""Debian's chromium driven by Playwright, and pages that fail the test on a console error.

Playwright never downloads a browser here: every launch uses /usr/bin/chromium. The
autoplay policy is a command-line switch, so it is per browser, not per context: the
default browser lets media play without a gesture; a second one, launched on demand,
requires a user activation first (the policy real visitors meet).

Mind that Playwright runs its in-page calls (`evaluate`, `title`, `wait_for_selector`,
`wait_for_function`, locators, and clicks of course) with a user gesture, which gives the
document sticky user activation (`page.wait_for_timeout` does not, nor does `goto`): to see
the strict autoplay policy refuse, the page must try to play by itself before the test makes
any such call on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
AUTOPLAY_ALLOWED = "no-user-gesture-required"
AUTOPLAY_NEEDS_GESTURE = "document-user-activation-required"
PHONE_VIEWPORT = {"width": 390, "height": 844}
DEFAULT_TIMEOUT_MS = 10_000
# The browser asks every origin for /favicon.ico by itself; a 404 there is no page's error.
ALWAYS_ALLOWED_ERRORS = (r"/favicon\.ico$",)

# Shifts the page's wall clock (Date.now(), new Date(), Date()) by a fixed offset, as on a
# visitor's machine whose clock is wrong; performance.now() stays the real monotonic clock.
CLOCK_OFFSET_SCRIPT = """
(() => {
  const offset = %s;
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  function ShiftedDate(...args) {
    if (!new.target) return new RealDate(realNow() + offset).toString();
    return args.length ? new RealDate(...args) : new RealDate(realNow() + offset);
  }
  Object.setPrototypeOf(ShiftedDate, RealDate);
  ShiftedDate.prototype = RealDate.prototype;
  ShiftedDate.now = () => realNow() + offset;
  Object.defineProperty(RealDate.prototype, "constructor", { value: ShiftedDate });
  globalThis.Date = ShiftedDate;
})();
"""


def launch_chromium(playwright: Playwright, autoplay_policy: str = AUTOPLAY_ALLOWED) -> Browser:
    """Debian's chromium, headless, with the given `--autoplay-policy`."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--autoplay-policy={autoplay_policy}"],
    )


def open_html(page: Page, url: str, html: str) -> None:
    """Navigate `page` to `url` answered with `html` by Playwright itself (the server is never
    asked): a page of one's own on any origin, whose scripts run before any evaluate."""
    page.route(url, lambda route: route.fulfill(body=html, content_type="text/html; charset=utf-8"))
    page.goto(url)


@dataclass
class PageRecord:
    """What one page reported: console errors and uncaught exceptions, as text."""

    label: str
    allow: list[re.Pattern[str]]
    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        """The page's `console` listener: keeps messages of type error."""
        if message.type != "error":
            return
        location = message.location or {}
        where = location.get("url", "")
        text = f"console.error: {message.text} ({where}:{location.get('lineNumber', '?')})"
        self._add(text, where)

    def page_error(self, error: Exception) -> None:
        """The page's `pageerror` listener: keeps uncaught exceptions."""
        self._add(f"uncaught: {error}", "")

    def _add(self, text: str, url: str) -> None:
        if not any(pattern.search(text) or pattern.search(url) for pattern in self.allow):
            self.errors.append(text)


class PageFactory:
    """`new_page(...)`: a fresh browser context (one user) and its page, watched for errors.

    Keyword options: `clock_offset_ms` (the page's Date runs that far off), `viewport`
    (`{"width", "height"}`, e.g. `PHONE_VIEWPORT`), `autoplay_policy` (a second browser is
    launched for `AUTOPLAY_NEEDS_GESTURE`), `allow_errors` (regular expressions: console
    errors whose text or resource URL matches one are not failures, e.g. an intentionally
    missing file; /favicon.ico always is), `label` (names the page in failures) and any other
    `Browser.new_context` option.
    """

    def __init__(self, playwright: Playwright, browser: Browser) -> None:
        self.playwright = playwright
        self.browsers: dict[str, Browser] = {AUTOPLAY_ALLOWED: browser}
        self.owned: list[Browser] = []
        self.contexts: list[BrowserContext] = []
        self.records: dict[Page, PageRecord] = {}

    def __call__(
        self,
        *,
        clock_offset_ms: float = 0,
        viewport: dict[str, int] | None = None,
        autoplay_policy: str = AUTOPLAY_ALLOWED,
        allow_errors: Iterable[str] = (),
        label: str | None = None,
        **context_options: Any,
    ) -> Page:
        browser = self.browser(autoplay_policy)
        if viewport is not None:
            context_options["viewport"] = viewport
        context = browser.new_context(**context_options)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        self.contexts.append(context)
        if clock_offset_ms:
            context.add_init_script(CLOCK_OFFSET_SCRIPT % json.dumps(clock_offset_ms))
        page = context.new_page()
        record = PageRecord(
            label=label or f"page {len(self.records) + 1}",
            allow=[re.compile(pattern) for pattern in (*ALWAYS_ALLOWED_ERRORS, *allow_errors)],
        )
        page.on("console", record.console)
        page.on("pageerror", record.page_error)
        self.records[page] = record
        return page

    def browser(self, autoplay_policy: str = AUTOPLAY_ALLOWED) -> Browser:
        """The browser with that autoplay policy (launched the first time it is asked for)."""
        if autoplay_policy not in self.browsers:
            launched = launch_chromium(self.playwright, autoplay_policy)
            self.owned.append(launched)
            self.browsers[autoplay_policy] = launched
        return self.browsers[autoplay_policy]

    def errors(self, page: Page) -> list[str]:
        """The console errors and uncaught exceptions of `page` so far."""
        self._deliver_events(page)
        return list(self.records[page].errors)

    def take_errors(self, page: Page) -> list[str]:
        """The errors of `page` so far, which then no longer fail the test (expected errors)."""
        self._deliver_events(page)
        record = self.records[page]
        taken, record.errors = record.errors, []
        return taken

    @staticmethod
    def _deliver_events(page: Page) -> None:
        # The sync API handles the driver's events only inside a call: make a round trip to
        # the driver, so the events it has sent reach the listeners. Not an evaluate: that
        # would give the page user activation (see the module docstring).
        if not page.is_closed():
            page.wait_for_timeout(0)

    def screenshot_all(self, directory: Path, prefix: str) -> list[Path]:
        """A screenshot of every open page (for a failed test); best effort."""
        directory.mkdir(parents=True, exist_ok=True)
        shots = []
        for index, page in enumerate(self.records, start=1):
            if page.is_closed():
                continue
            path = directory / f"{prefix}-{index}.png"
            try:
                page.screenshot(path=str(path), timeout=3_000)
            except Exception:  # the page may be gone or hung; the failure itself matters more
                continue
            shots.append(path)
        return shots

    def close(self) -> list[str]:
        """Close every context (and the extra browsers); the unexpected errors, labelled."""
        failures = [
            f"{record.label}: {error}"
            for record in self.records.values()
            for error in record.errors
        ]
        for context in self.contexts:
            context.close()
        for browser in self.owned:
            browser.close()
        return failures
