"""The screenshots of docs/ui.md (docs/images/ui-*.png), made from a fresh quick-start run so
they show what the current code shows:

    python scripts/ui_screenshots.py            # needs the ui extra, playwright and
                                                # chromium-headless-shell (or --chromium PATH)

It runs the quick start and a comparison report in a temporary folder, starts `mlxtune ui`,
rejects one pair and edits another by keyboard in headless Chromium, asks the chat a question,
re-runs the training (the decisions changed its data) and saves one PNG per page."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLXTUNE = str(Path(sys.executable).with_name("mlxtune"))


def run(*args: str, cwd: Path) -> None:
    done = subprocess.run([MLXTUNE, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"mlxtune {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def shoot(base: str, out: Path, chromium: str, work: Path) -> None:
    from playwright.sync_api import sync_playwright

    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # OpenBLAS crashes node
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        driver = sync_playwright().start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1200, "height": 760})

    def save(name: str) -> None:
        from PIL import Image  # matplotlib's dependency: 256 colours, a third of the bytes

        path = out / f"ui-{name}.png"
        page.screenshot(path=str(path))
        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
        print(f"wrote {path} ({path.stat().st_size // 1024} kB)")

    page.goto(f"{base}/")
    save("runs")
    page.goto(f"{base}/run/quickstart/papers")
    save("papers")
    page.locator("table.papers a").first.click()
    save("paper")
    page.goto(f"{base}/run/quickstart/pairs")
    for key in ("j", "r"):  # reject the first pair; the second is current
        page.keyboard.press(key)
    page.wait_for_selector("article.pair.reject")
    page.keyboard.press("e")
    editor = page.locator("article.pair.current form.editor")
    editor.locator("textarea[name=question]").fill(
        "How can normalization work with very small batches?"
    )
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("article.pair.edit")
    page.goto(f"{base}/run/quickstart/pairs")  # from the top: the filters, the two decided
    for key in ("j", "j"):
        page.keyboard.press(key)
    page.wait_for_timeout(300)
    save("pairs")
    page.goto(f"{base}/run/quickstart/compare")
    page.wait_for_timeout(500)
    save("compare")
    page.goto(f"{base}/run/quickstart/chat")
    page.fill("textarea[name=question]", "How can cells be segmented?")
    page.fill("input[name=max_tokens]", "60")
    page.click("button[type=submit]")
    page.wait_for_selector("#finish[data-done]", timeout=120_000)
    save("chat")
    # the runs page while the training runs again (the decisions above changed its data)
    training = subprocess.Popen(
        [MLXTUNE, "recipe", "run", "recipes/quickstart.yaml", "--until", "train"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    page.goto(f"{base}/")
    page.wait_for_selector(".training.running", timeout=120_000)
    deadline = time.monotonic() + 120  # (the page's CSP allows no wait_for_function)
    while int(page.locator(".training .step").inner_text() or 0) < 70:
        if time.monotonic() > deadline:
            sys.exit("the training did not get to step 70 in two minutes")
        page.wait_for_timeout(500)
    save("training")
    training.wait(timeout=300)
    browser.close()
    driver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument(
        "--chromium", default=shutil.which("chromium-headless-shell") or "/usr/bin/chromium"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("recipes", "examples"):
            shutil.copytree(ROOT / name, work / name)
        run("recipe", "run", "recipes/quickstart.yaml", cwd=work)
        run("compare", "runs/quickstart", "--max-tokens", "40", cwd=work)
        server = subprocess.Popen(
            [MLXTUNE, "ui", "runs/quickstart", "--port", "0"],
            cwd=work,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = server.stdout.readline()  # type: ignore[union-attr]
            match = re.search(r"at (http://\S+)/ ", line)
            if match is None:
                sys.exit(f"mlxtune ui did not start: {line!r}")
            shoot(match.group(1), args.out, args.chromium, work)
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
