"""The README's pictures, made from the bundled demo models (`make docs-pictures`, ~3 min on 2 cores).

    .venv/bin/python benchmarks/docs_pictures.py [--work runs/docs_pictures] [--out docs] [--only page]

docs/predict_example.png  `findbox predict --save` on the shipped sample scene, three of its captions
docs/eval_report.png      report.html of `findbox eval` on a fresh synth set (20 images, seed 7001, low noise)
docs/page.png             the page at / of `findbox serve`, given the first scene of that set and two of its captions

Every command is the real CLI with no model options, so the pictures show what the demo
bundle does. The browser is Debian's /usr/bin/chromium driven by Playwright (never a
downloaded build); the server listens on loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from load import free_port, wait_ready  # noqa: E402
from page_screenshot import CHROMIUM_ARGS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = Path("src/findbox/assets/sample")  # relative: main() works from ROOT
# the README's quick-start captions (tests/test_predict.py checks the demo finds them)
PREDICT_CAPTIONS = ["grey and orange fighter plane", "brown missile", "orange, black, and blue drone"]
EVAL_SYNTH = ["--images", "20", "--seed", "7001", "--noise", "low"]  # a seed no demo model saw
VIEWPORT = {"width": 1360, "height": 900}
PICTURE_WIDTH = 1360  # wider pictures only add bytes: the README shows them at page width
PICTURES = ("predict", "eval", "page")  # predict_example.png, eval_report.png, page.png


def findbox(*args: str) -> None:
    cmd = [sys.executable, "-m", "findbox.cli", *args]
    print("+ findbox", " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def save_png(image: Image.Image, path: Path) -> None:
    if image.width > PICTURE_WIDTH:
        image = image.resize((PICTURE_WIDTH, round(image.height * PICTURE_WIDTH / image.width)),
                             Image.Resampling.LANCZOS)
    image.convert("RGB").save(path, optimize=True)
    print(f"wrote {path} ({image.width}x{image.height}, {path.stat().st_size // 1024} KB)", flush=True)


def predict_example(work: Path, out: Path) -> None:
    line = json.loads((SAMPLE_DIR / "vlm.jsonl").read_text().splitlines()[0])
    image = SAMPLE_DIR / "images" / line["image"]
    captions = [a for c in PREDICT_CAPTIONS for a in ("--caption", c)]
    findbox("predict", str(image), *captions, "--save", str(work / "predict"), "--device", "cpu")
    save_png(Image.open(work / "predict" / f"{image.stem}.png"), out / "predict_example.png")


def eval_data(work: Path) -> Path:
    """The fresh synth set the report and the page picture show (made once per work folder)."""
    data = work / "eval_data"
    if not (data / "vlm.jsonl").exists():
        findbox("synth", str(data), *EVAL_SYNTH)
    return data


def eval_report(browser, data: Path, work: Path, out: Path) -> None:
    findbox("eval", str(data / "vlm.jsonl"), "--out", str(work / "eval"), "--split", "all", "--device", "cpu",
            "--no-progress")
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    print(f"eval accuracy {metrics['accuracy']:.4f}", flush=True)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto((work / "eval" / "report.html").resolve().as_uri())
    page.wait_for_load_state("load")
    shot = work / "eval_report_full.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    full = Image.open(shot)
    # the top of the report (headline numbers, breakdowns); the long failure gallery stays in the file
    save_png(full.crop((0, 0, full.width, min(full.height, 2 * VIEWPORT["height"]))), out / "eval_report.png")


def page_picture(browser, data: Path, work: Path, out: Path) -> None:
    from playwright.sync_api import expect

    line = json.loads((data / "vlm.jsonl").read_text().splitlines()[0])
    captions = [a["caption"] for a in line["annotations"][:2]]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "findbox.cli", "serve", "--host", "127.0.0.1", "--port",
                               str(port), "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, server, timeout=300)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(120_000)
        page.goto(url + "/")
        expect(page.locator("#health")).to_have_class(re.compile(r"\bok\b"))
        page.set_input_files("#file", str(data / "images" / line["image"]))
        inputs = page.locator("#captions input")
        for k, caption in enumerate(captions):
            inputs.nth(k).fill(caption)
        page.click("#find")
        expect(page.locator(".box.chosen")).to_have_count(len(captions))
        page.screenshot(path=str(out / "page.png"), full_page=True)
        page.close()
        print(f"wrote {out / 'page.png'} ({line['image']}: {', '.join(captions)})", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/docs_pictures", help="scratch folder (relative to the repository)")
    parser.add_argument("--out", default="docs", help="where the three PNGs go (relative to the repository)")
    parser.add_argument("--only", choices=PICTURES, action="append",
                        help="make only this picture (repeatable; default all three)")
    args = parser.parse_args()
    os.chdir(ROOT)  # paths in the pictures (the report's title, the page's file name) read as in the README
    work, out = Path(args.work), Path(args.out)
    for stale in ("predict", "eval"):
        shutil.rmtree(work / stale, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if not Path("/usr/bin/chromium").exists():
        print("docs_pictures: /usr/bin/chromium is missing; `make setup` installs it", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from playwright.sync_api import sync_playwright

    only = set(args.only or PICTURES)
    if "predict" in only:
        predict_example(work, out)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            data = eval_data(work)
            if "eval" in only:
                eval_report(browser, data, work, out)
            if "page" in only:
                page_picture(browser, data, work, out)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
