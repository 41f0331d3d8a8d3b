"""Open the built book in headless Chromium, check what a reader gets, save screenshots.

    python tools/book_browser_check.py build/book build/book-shots

Needs the `playwright` package and a Chromium binary (Debian: apt-get install chromium; the
script never downloads a browser). Checks: the index links every lesson; a lesson page has its
title, typeset math (MathJax nodes), a folded solution that opens, a saved widget under its note,
working previous / next links; and no request leaves the file system (the book works offline).
Screenshots of the index and lesson 03 go to the second folder, for a person to look at.
"""
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def check(book, shots, chromium="/usr/bin/chromium"):
    book, shots = Path(book).resolve(), Path(shots)
    shots.mkdir(parents=True, exist_ok=True)
    lessons = sorted(p.name for p in book.glob("[0-9][0-9]_*.html"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        remote = []
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else remote.append(r.url))
        page.goto((book / "index.html").as_uri())
        page.screenshot(path=shots / "index.png")
        assert [a.get_attribute("href") for a in page.locator("ol.lessons a").all()] == lessons
        page.click("text=Lesson 3")
        page.wait_for_function("typeof MathJax !== 'undefined' && MathJax.Hub && MathJax.Hub.queue.pending === 0")
        assert page.title().startswith("Lesson 3"), page.title()
        assert page.locator(".MathJax, .MathJax_Display").count() > 0, "no typeset math"
        page.screenshot(path=shots / "lesson03_top.png")
        solution = page.locator("details.solution").first
        solution.scroll_into_view_if_needed()
        solution.locator("summary").click()
        assert solution.get_attribute("open") is not None
        page.screenshot(path=shots / "lesson03_solution.png")
        note = page.locator(".widget-note").first
        note.scroll_into_view_if_needed()
        assert page.locator(".widget-note + img, .widget-note ~ img").count() > 0, "no saved widget image"
        page.screenshot(path=shots / "lesson03_widget.png")
        page.locator("a[rel=next]").first.click()
        assert page.title().startswith("Lesson 4"), page.title()
        browser.close()
    assert not remote, f"the book fetched from the network: {remote[:3]}"
    return sorted(str(s) for s in shots.glob("*.png"))


if __name__ == "__main__":
    args = sys.argv[1:] + ["build/book", "build/book-shots"][len(sys.argv[1:]):]
    for shot in check(*args[:2]):
        print(f">> {shot}")
    print(">> book checked in Chromium: index, titles, math, solutions, widgets, navigation, offline")
