"""`mlxtune ui` as a reviewer uses it: the command in its own process on the README's quick
start, a real headless Chromium (Debian's chromium-headless-shell, through Playwright) pressing
the keys: reject one pair, edit another; then `mlxtune recipe run` in a fresh process keeps the
rejection and the edit in curated.jsonl and trains again. The chat answers as `mlxtune ask`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from serve_support import MLXTUNE, command_env, quickstart, recipe_run

from mlxtune.records import read_jsonl
from mlxtune.reviews import pair_key

CHROMIUM = "/usr/bin/chromium-headless-shell"
OVERRIDES = ("train.iters=30",)


def chromium() -> str:
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium-headless-shell")
    if found is None or not _has_playwright():
        if os.environ.get("MLXTUNE_REQUIRE_BROWSER"):  # set by .ci/run once it installed one
            pytest.fail("MLXTUNE_REQUIRE_BROWSER is set but no headless Chromium/Playwright")
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell) or playwright")
    return found


def _has_playwright() -> bool:
    import importlib.util

    return importlib.util.find_spec("playwright") is not None


@contextmanager
def ui_server(*args: str, cwd: Path, timeout: float = 60):
    """`mlxtune ui ARGS --port 0` in its own process; yields its address; always stops it."""
    process = subprocess.Popen(
        [MLXTUNE, "ui", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command_env(),
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if not line and process.poll() is not None:
                raise AssertionError(f"ui exited {process.returncode}: {process.stderr.read()}")  # type: ignore[union-attr]
            if match := re.search(r"at (http://\S+)/ ", line):
                yield match.group(1)
                return
        raise AssertionError("mlxtune ui printed no address")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The README's quick start (its recipes and sample papers) in a fresh folder."""
    return quickstart(tmp_path_factory.mktemp("ui-quickstart"), *OVERRIDES)


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's node driver and Chromium crash with OpenBLAS preloaded (.ci/run preloads it
    # for MLX): they start without it
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LD_PRELOAD", raising=False)
        driver = sync_playwright().start()
    try:
        launched = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()
    finally:
        driver.stop()


@pytest.mark.slow
def test_reject_and_edit_by_keyboard_then_recipe_run_applies_them(trained, browser):
    run = trained / "runs" / "quickstart"
    pairs = list(read_jsonl(run / "pairs.jsonl"))
    with ui_server("runs/quickstart", cwd=trained) as base:
        page = browser.new_page()
        page.goto(f"{base}/run/quickstart/pairs")
        cards = page.locator("article.pair")
        first, second = cards.nth(0), cards.nth(1)
        assert first.get_attribute("data-key") == pair_key(pairs[0])
        page.keyboard.press("j")  # the first pair is current
        page.keyboard.press("r")  # rejected; the next pair is current
        page.wait_for_selector(f"#pair-{pair_key(pairs[0])}.reject")
        assert "current" in (second.get_attribute("class") or "")
        page.keyboard.press("e")
        editor = second.locator("form.editor")
        editor.locator("textarea[name=question]").fill("How can a small batch be normalized?")
        editor.locator("textarea[name=approach]").fill("Normalize over groups of channels.")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector(f"#pair-{pair_key(pairs[1])}.edit")
        assert "edited" in page.locator("#status").inner_text()
        page.keyboard.press("k")
        assert "current" in (cards.nth(0).get_attribute("class") or "")
        # the page's own fetch without the token is refused, and nothing is recorded
        refused = page.evaluate(
            "async (url) => (await fetch(url, {method: 'POST', body: 'verdict=accept', headers: "
            "{'Content-Type': 'application/x-www-form-urlencoded'}})).status",
            f"/run/quickstart/pairs/{pair_key(pairs[2])}/review",
        )
        assert refused == 403 and len((run / "reviews.jsonl").read_text().splitlines()) == 2

        # a training in progress: the runs page follows its metrics.jsonl as it grows
        partial = run / "adapters.partial"
        partial.mkdir()
        with open(partial / "metrics.jsonl", "w") as fh:
            fh.write(json.dumps({"step": 10, "train_loss": 4.0}) + "\n")
        page.goto(f"{base}/")
        assert page.locator(".training .step").inner_text() == "10"
        with open(partial / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": 20, "train_loss": 3.0}) + "\n")
        page.wait_for_selector(".training.running .step:text-is('20')", timeout=10_000)
        shutil.rmtree(partial)

        # the chat answers the ask stage's question as the ask stage did (the same session)
        asked = next(read_jsonl(run / "answers.jsonl"))
        page.goto(f"{base}/run/quickstart/chat")
        assert "max_tokens" in page.locator("table.sampling").inner_text()
        page.fill("textarea[name=question]", asked["question"])
        page.click("button[type=submit]")
        page.wait_for_selector("#finish[data-done]", timeout=60_000)
        assert page.locator("#answer").inner_text().strip() == asked["answer"].strip() != ""
        page.close()

    done = recipe_run(trained, *OVERRIDES)
    assert "2 decided in review" in done.stdout
    curated = list(read_jsonl(run / "curated.jsonl"))
    assert pairs[0]["question"] not in [p["question"] for p in curated]
    edited = [p for p in curated if p["review"] == "edited"]
    assert [(p["question"], p["approach"]) for p in edited] == [
        ("How can a small batch be normalized?", "Normalize over groups of channels.")
    ]
    rejects = list(read_jsonl(run / "curation_rejects.jsonl"))
    assert [r["reason"] for r in rejects if r["review"] == "rejected"] == ["rejected in review"]
    assert re.search(r"✓ train ", done.stdout), done.stdout  # trained again, not skipped
    train_data = (run / "data" / "train.jsonl").read_text() + (
        run / "data" / "valid.jsonl"
    ).read_text()
    assert "Normalize over groups of channels." in train_data
