"""Screenshot of the page at `/` after a request on its sample scene, against any running server.

    .venv/bin/python benchmarks/page_screenshot.py --url http://127.0.0.1:5004 --out /tmp/page.png

docs/page.png itself comes from `make docs-pictures` (benchmarks/docs_pictures.py), which
starts the server with the bundled demo models and uses this module's browser settings.

Drives Debian's /usr/bin/chromium headless through Playwright (no downloaded browser),
loopback servers only: clicks "Use a sample scene", keeps the two suggested captions,
clicks Find and saves the full page once both chosen boxes are drawn.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load import require_loopback  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="a running findbox server on loopback")
    parser.add_argument("--out", default="docs/page.png")
    parser.add_argument("--width", type=int, default=1360)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    require_loopback(args.url)
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.set_default_timeout(120_000)
        page.goto(args.url.rstrip("/") + "/")
        expect(page.locator("#health")).to_have_class(re.compile(r"\bok\b"))
        page.click("#sample")
        page.click("#find")
        expect(page.locator(".box.chosen")).to_have_count(2)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
