"""`mlxtune ui` through Starlette's TestClient on run directories written as the stages write
them (tests/ui_support.py): every page, a decision recorded in reviews.jsonl and shown, the
writes that must be refused (no token, another site's Origin, a foreign Host), files only from
inside the run directory (traversal, a link out, a changed PDF), and a 1,500-paper run read
through its indexes, not whole files per request. The browser and `recipe run` are in
test_ui_browser.py."""

from __future__ import annotations

import json
import os
import re

import pytest

pytest.importorskip("starlette")
from click.testing import CliRunner  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from ui_support import make_run, training_metrics  # noqa: E402

from mlxtune.cli import cli  # noqa: E402
from mlxtune.reviews import load_reviews, pair_key  # noqa: E402
from mlxtune.ui import open_runs  # noqa: E402
from mlxtune.ui.app import make_app  # noqa: E402

TOKEN = "test-token"
BASE = "http://127.0.0.1:8765"
OWN = {"X-CSRF-Token": TOKEN, "Origin": BASE}


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "runs" / "small", papers=30)


def client(*folders) -> TestClient:
    return TestClient(make_app(open_runs([str(f) for f in folders]), TOKEN), base_url=BASE)


def pairs_of(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]


def test_runs_page_counts_and_a_live_training(run):
    c = client(run)
    page = c.get("/").text
    assert re.search(r"papers-ok\">27<", page) and re.search(r"papers-skipped\">3<", page)
    assert re.search(r"pairs-kept\">21<", page) and re.search(r"pairs-rejected\">6<", page)
    assert "not trained" in page and "27 pairs" in page  # the summarize stage's summary
    metrics = training_metrics(run / "adapters.partial", 40)
    page = c.get("/").text
    assert 'hx-trigger="every 2s"' in page and 'step <span class="step">40</span> of 100' in page
    assert page.count("<polyline") == 2  # train and validation loss
    with open(metrics, "a") as fh:
        fh.write(json.dumps({"step": 50, "train_loss": 3.5}) + "\n")
    part = c.get("/run/small/status").text
    assert '<span class="step">50</span>' in part and "running" in part
    os.utime(metrics, (1, 1))  # not written to for decades: a stopped training
    part = c.get("/run/small/status").text
    assert "stopped" in part and 'hx-trigger="every 10s"' in part  # a new training is seen


def test_papers_filter_and_paper_page(run):
    c = client(run)
    page = c.get("/run/small/papers?status=skipped").text
    assert page.count('<tr class="paper skipped">') == 3 and "image-only: no text layer" in page
    page = c.get("/run/small/papers?category=vision").text
    assert page.count('<tr class="paper') == 10
    doc = json.loads((run / "documents.jsonl").read_text().splitlines()[0])
    page = c.get(f"/run/small/papers/{doc['id']}").text
    assert "How can model 0 be trained" in page and "0.97" in page and "iframe" in page
    assert c.get("/run/small/papers/" + "0" * 64).status_code == 404


def test_pairs_page_marks_the_evidence_and_the_curators_reason(run):
    page = client(run).get("/run/small/pairs?verdict=rejected").text
    assert page.count('<article class="pair') == 6
    assert "too short (approach under 20 words)" in page
    first = pairs_of(run)[0]
    q, a = first["evidence"][0]["text"], first["evidence"][1]["text"]
    assert f"<mark class='question'>{q}</mark>" in page
    assert f"<mark class='approach'>{a}</mark>" in page


def test_a_decision_is_recorded_shown_and_filtered(run):
    c = client(run)
    pairs = pairs_of(run)
    keys = [pair_key(p) for p in pairs[:3]]
    assert (
        c.post(
            f"/run/small/pairs/{keys[0]}/review", data={"verdict": "reject"}, headers=OWN
        ).status_code
        == 200
    )
    card = c.post(
        f"/run/small/pairs/{keys[1]}/review",
        headers=OWN,
        data={"verdict": "edit", "question": "Edited <b>q</b>?", "approach": "New a."},
    )
    assert card.status_code == 200 and "Edited &lt;b&gt;q&lt;/b&gt;?" in card.text
    assert "as summarized" in card.text and pairs[1]["question"] in card.text
    bad = c.post(
        f"/run/small/pairs/{keys[2]}/review", data={"verdict": "edit", "question": "q"}, headers=OWN
    )
    assert bad.status_code == 400 and "needs both a question and an approach" in bad.text
    assert (
        c.post(
            "/run/small/pairs/0123456789abcdef/review", data={"verdict": "accept"}, headers=OWN
        ).status_code
        == 404
    )
    reviews = load_reviews(run)
    assert {k: r.verdict for k, r in reviews.items()} == {keys[0]: "reject", keys[1]: "edit"}
    assert reviews[keys[0]].document_id == pairs[0]["document_id"]
    page = c.get("/run/small/pairs?review=reject").text
    assert page.count('<article class="pair') == 1 and f"pair-{keys[0]}" in page
    assert "of 2 (25)" in c.get("/run/small/pairs?review=unreviewed").text  # 27 less 2
    c.post(f"/run/small/pairs/{keys[0]}/review", data={"verdict": "clear"}, headers=OWN)
    assert keys[0] not in load_reviews(run)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no token
        {"X-CSRF-Token": "guessed", "Origin": BASE},
        {"X-CSRF-Token": TOKEN, "Origin": "http://evil.example"},
        {"X-CSRF-Token": TOKEN, "Origin": "http://127.0.0.1:9999"},  # another local app
        {"X-CSRF-Token": TOKEN, "Origin": "null"},
        {"X-CSRF-Token": TOKEN, "Sec-Fetch-Site": "cross-site"},
        {"X-CSRF-Token": TOKEN, "Host": "rebound.example:8765"},
    ],
)
def test_a_write_that_is_not_from_this_apps_pages_is_refused(run, headers):
    key = pair_key(pairs_of(run)[0])
    reply = client(run).post(
        f"/run/small/pairs/{key}/review", data={"verdict": "reject"}, headers=headers
    )
    assert reply.status_code == 403, reply.text
    assert not (run / "reviews.jsonl").exists()
    chat = client(run).post("/run/small/chat", json={"question": "q"}, headers=headers)
    assert chat.status_code == 403


def test_pages_answer_only_their_own_host_and_send_no_frame_to_others(run):
    c = client(run)
    assert c.get("/", headers={"Host": "rebound.example"}).status_code == 403
    reply = c.get("/")
    assert reply.headers["x-frame-options"] == "SAMEORIGIN"
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    assert c.put("/", headers=OWN).status_code == 405


def test_files_only_from_inside_the_run_directory(run, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    (run / "link").symlink_to(tmp_path / "secret.txt")
    c = client(run)
    assert c.get("/run/small/files/manifest.json").json()["recipe"]["name"] == "small"
    for path in (
        "%2e%2e/%2e%2e/secret.txt",
        "..%2f..%2fsecret.txt",
        "link",
        "%2Fetc%2Fpasswd",
        "data/../../../secret.txt",
        "nothing.json",
    ):
        reply = c.get(f"/run/small/files/{path}")
        assert reply.status_code == 404 and "secret" not in reply.text, path
    assert c.get("/run/small/compare/0/report.html").status_code == 404
    assert c.get("/run/other/pairs").status_code == 404


def test_a_pdf_is_served_only_while_it_is_the_recorded_paper(tmp_path):
    run = make_run(tmp_path / "runs" / "pdf", papers=2, skipped_every=0)
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4 a paper")
    docs = [json.loads(line) for line in (run / "documents.jsonl").read_text().splitlines()]
    import hashlib

    docs[0].update(id=hashlib.sha256(pdf.read_bytes()).hexdigest(), path=str(pdf))
    docs[1].update(path=str(tmp_path / "secret.txt"))  # not a PDF: never served
    (tmp_path / "secret.txt").write_text("secret")
    (run / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    c = client(run)
    reply = c.get(f"/run/pdf/papers/{docs[0]['id']}/pdf")
    assert reply.status_code == 200 and reply.content == pdf.read_bytes()
    assert reply.headers["content-type"] == "application/pdf"
    assert c.get(f"/run/pdf/papers/{docs[1]['id']}/pdf").status_code == 404
    pdf.write_bytes(b"%PDF-1.4 another paper now")  # the file changed since extraction
    assert c.get(f"/run/pdf/papers/{docs[0]['id']}/pdf").status_code == 404


def test_a_1500_paper_run_is_paginated_and_read_through_its_indexes(tmp_path):
    run = make_run(tmp_path / "runs" / "big", papers=1500)
    app = make_app(open_runs([str(run)]), TOKEN)
    c = TestClient(app, base_url=BASE)
    page = c.get("/run/big/pairs").text
    assert (
        page.count('<article class="pair') == 20
        and 'page <b class="page-number">1</b> of 68' in page
    )
    last = c.get("/run/big/pairs?page=68").text
    assert last.count('<article class="pair') == 1350 - 67 * 20
    assert "page=67" in last and "page=69" not in last
    c.get("/run/big/pairs?page=30&category=vision")
    c.get("/run/big/papers?page=75")
    state = app.app.state.ui.runs["big"]
    # each file was read whole once, for its index; pages then seek to their lines
    assert state.documents.builds == 1 and state.pairs.builds == 1 and state.rejects.builds == 1
    with open(run / "pairs.jsonl", "a") as fh:  # the file grows: its index is rebuilt
        fh.write((run / "pairs.jsonl").read_text().splitlines()[0] + "\n")
    assert "of 68 (1351)" in c.get("/run/big/pairs").text and state.pairs.builds == 2


def test_the_command_refuses_another_host_and_a_folder_that_is_no_run(tmp_path):
    result = CliRunner().invoke(cli, ["ui", str(tmp_path), "--host", "0.0.0.0"])
    assert result.exit_code != 0 and "--allow-remote" in result.output
    result = CliRunner().invoke(cli, ["ui", str(tmp_path)])
    assert result.exit_code != 0 and "not a run directory (no manifest.json)" in result.output


def test_without_the_extra_the_command_names_it(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    result = CliRunner().invoke(cli, ["ui", str(tmp_path)])
    assert result.exit_code != 0
    assert 'pip install "mlxtune[ui]"' in result.output and len(result.output.splitlines()) == 1
