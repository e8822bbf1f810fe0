"""Data you can trust: each class of extraction damage real PDFs show, on a PDF built to show it;
the readability check; titles; the heuristic summarizer's questions; and the curate stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pdfgen import paper_text, write_paper, write_raw_pages

from mlxtune.extract.pypdf_extractor import PypdfExtractor
from mlxtune.records import Document, Pair

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ue000-\uf8ff]")
PROSE = (
    "Deep networks are hard to train when the distribution of each layer's inputs changes during "
    "training. We propose a method that normalizes the inputs of each layer over a mini-batch, "
    "which allows much higher learning rates and makes the network less sensitive to how it is "
    "initialized. On image classification the method reaches the same accuracy with fewer steps "
    "and improves on the best published result. "
)


def extract(path: Path, **options) -> Document:
    return PypdfExtractor(PypdfExtractor.Options(**options)).extract(path, "c")


def shifted(text: str, by: int = 3) -> str:
    """A font whose codes are offset from the letters (a Caesar shift): word-like garbage."""
    return "".join(
        chr((ord(c) - 97 + by) % 26 + 97) if c.islower() else c for c in text
    )  # fmt: skip


def test_font_encoding_garbage_is_skipped_with_its_score_and_can_be_kept(tmp_path):
    from mlxtune.extract.quality import readability

    substituted = PROSE.replace("t", "=").replace("w", "V").replace("n", "}")
    assert readability(PROSE * 3).score > 0.9
    assert readability(shifted(PROSE) * 3).score < 0.5
    assert readability(substituted * 3).score < 0.5
    lines = [line.encode() for line in re.findall(r".{1,80}(?:\s|$)", shifted(PROSE) * 3)]
    pdf = write_raw_pages(tmp_path / "garbage.pdf", [lines])
    doc = extract(pdf)
    assert (doc.status, doc.problem) == ("skipped", "unreadable-text")
    assert "readability 0." in doc.reason and "min_readability" in doc.reason
    kept = extract(pdf, min_readability=0)
    assert kept.ok and kept.readability is not None and kept.readability < 0.5
    good = [line.encode() for line in re.findall(r".{1,80}(?:\s|$)", PROSE * 3)]
    assert extract(write_raw_pages(tmp_path / "good.pdf", [good])).ok


def test_glyph_codes_ligatures_accents_and_hyphens_are_repaired(tmp_path):
    """Byte codes as old TeX fonts (OT1) and unmapped ligatures (NUL) deliver them."""
    page = [
        b"It is di\x00cult to train such networks, and the di\x00culty is the same again.",
        b"The e\x0ecient method is su\x0ecient; efficient and sufficient it remains.",
        b"J\x7f urgen Schmidhuber and Op \x13erationnelle research agree on this.",
        b"The improvement is signifi-",
        b"cantly larger, and the gain is signifi- cantly larger again with in- and output.",
        b"A glyph from a symbol font \xef stays out of the text." ,
        b"We define the effect of the first difficult office and the significant result.",
    ]  # fmt: skip
    text = extract(write_raw_pages(tmp_path / "glyphs.pdf", [page * 3])).text
    assert not CONTROL.search(text)
    assert "difficult to train" in text and "difficulty" in text
    assert "efficient method is sufficient" in text
    assert "Jürgen" in text and "Opérationnelle" in text
    assert "significantly larger, and the gain is significantly larger" in text
    assert "in- and output" in text


def test_running_headers_stamps_cover_pages_and_letter_spacing_are_removed(tmp_path):
    body = paper_text("segmentation", 1)
    body["2 Method"] += " The P ageRank of a W eb page measures its imp ortance; PageRank and " * 1
    body["2 Method"] += "the importance of a Web page are what we compute. "
    pages = 6
    pdf = write_paper(tmp_path / "p.pdf", "Segmentation with Running Headers", body, pages=pages)
    # the same paper with a masthead on every page and an arXiv stamp inside a word
    from pypdf import PdfReader

    texts = [p.extract_text() for p in PdfReader(str(pdf)).pages]
    raw = []
    for n, text in enumerate(texts, start=1):
        lines = [f"Communications of the ACM July 1974 Volume 17 Number {n}", *text.splitlines()]
        if n == 2:
            lines.insert(3, "the seg arXiv:1409.1556v6 [cs.CV] 10 Apr 2015")
            lines.insert(4, "mentation network is trained end to end")
        if n == 3:  # the stamp as a page's last line, then a figure's label (U-Net's page 1)
            lines += ["the class label of each pixel", "arXiv:1505.04597v1 [cs.CV] 18 May 2015"]
        if n == 4:
            lines.insert(1, "copy and crop")
        raw.append([line.encode("latin-1", "replace") for line in lines])
    cover = [b"See discussions, stats, and author profiles for this publication at:", b"CITATIONS",
             b"12", b"READS", b"340", b"SEE PROFILE"]  # fmt: skip
    doc = extract(write_raw_pages(tmp_path / "damaged.pdf", [cover, *raw]))
    assert doc.ok
    assert "Communications of the ACM" not in doc.text and "SEE PROFILE" not in doc.text
    assert "arXiv" not in doc.text and "the segmentation network is trained" in doc.text
    assert "The PageRank of a Web page measures its importance" in doc.text
    # the stamp between pages is a line break: page 3's last word and page 4's first stay apart
    assert "pixelcopy" not in doc.text and re.search(r"each pixel\scopy and crop", doc.text)


def test_titles_reject_headings_and_stamps_keep_a_drop_cap_and_finish_a_cut_line():
    from mlxtune.extract.clean import complete_title, guess_title
    from mlxtune.extract.title import FontRuns, plausible_title

    assert not plausible_title("1 Introduction") and not plausible_title("ARTICLE RESEARCH")
    assert not plausible_title("arXiv:1409.1556v6 [cs.CV] 10 Apr 2015")
    assert not plausible_title("=}: a}e V= {{ |~| ^^") and plausible_title("Very Deep Networks")
    lines = ["arXiv:1409.1556v6 [cs.CV] 10 Apr 2015", "VERY DEEP CONVOLUTIONAL NETWORKS", "K. S."]
    assert guess_title(lines)[0] == "VERY DEEP CONVOLUTIONAL NETWORKS"
    cut = "SQUEEZENET: ALEXNET-LEVEL ACCURACY WITH"
    lines = [cut, "50X FEWER PARAMETERS AND <0.5MB MODEL SIZE", "Forrest N. Iandola"]
    assert complete_title(cut, lines).endswith("WITH 50X FEWER PARAMETERS AND <0.5MB MODEL SIZE")
    runs = FontRuns()
    runs.visit("C", [1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 72, 700], None, 40)
    runs.visit(
        "ONTINUOUS CONTROL WITH DEEP RL", [1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 90, 700], None, 20
    )
    runs.visit("body text " * 40, [1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 72, 600], None, 10)
    assert runs.title() == "CONTINUOUS CONTROL WITH DEEP RL"


def test_empty_files_have_ids_of_their_own(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"")
    (tmp_path / "b.pdf").write_bytes(b"")
    ids = {extract(tmp_path / name).id for name in ("a.pdf", "b.pdf")}
    assert len(ids) == 2


def doc(sections: dict[str, str], title: str = "A Paper", text: str = "") -> Document:
    body = text or "\n\n".join(sections.values())
    return Document(id="d", path="p.pdf", category="c", title=title, text=body, sections=sections)


def test_heuristic_questions_are_questions_and_approaches_are_prose():
    from mlxtune.summarize.heuristic import HeuristicSummarizer, as_question

    assert as_question("The question we address is whether context can be enlarged.") == (
        "Can context be enlarged?"
    )
    assert as_question("We ask how far a small network can be shrunk before it fails.") == (
        "How far can a small network be shrunk before it fails?"
    )
    assert as_question("A key challenge is how to align sequences of unknown length.") == (
        "How can we align sequences of unknown length?"
    )
    assert as_question("This raises a question: Are these results general? We test.") == (
        "Are these results general?"
    )
    assert as_question("Labelling unsegmented data is a ubiquitous problem.").endswith("?")
    summarizer = HeuristicSummarizer()
    pair = summarizer.summarize_one(
        doc(
            {
                "abstract": "Group normalization divides the channels into groups. It works well.",
                "method": "3.1 Formulation We compute the mean and variance within each group. "
                "Figure 2: the groups of a layer at a glance. "
                "The loop is for (i = 0; i < n; i++) { x[i] = y[i]; }. "
                "The statistics are computed per sample, so batch size no longer matters.",
            }
        )
    )
    assert pair.question.endswith("?") and "advance" not in pair.question
    assert pair.approach.startswith("We compute the mean and variance within each group.")
    assert "Figure" not in pair.approach and "{" not in pair.approach
    assert "3.1" not in pair.approach and "batch size no longer matters" in pair.approach
    old = doc({}, text="THE ELECTRODYNAMICS OF MOVING BODIES\n" + PROSE * 2)
    old_pair = summarizer.summarize_one(old)  # no headings at all: an old paper still gives one
    assert old_pair.question.endswith("?") and "We propose a method" in old_pair.approach


def pair(doc_id: str, question: str, approach: str) -> Pair:
    return Pair(document_id=doc_id, category="c", title=f"Paper {doc_id}", question=question,
                approach=approach, summarizer="test")  # fmt: skip


APPROACH = "We normalize each layer's inputs over groups of channels, so that training no longer "
APPROACH += "depends on the batch size, and we train the network end to end with plain SGD."


def test_rules_keep_good_pairs_and_say_why_they_reject_the_others():
    from mlxtune.curate.rules import RulesCurator

    pairs = [
        pair("a", "How can training be made independent of the batch size?", APPROACH),
        pair("b", "Training depends on the batch size.", APPROACH + " Again."),
        pair("c", "Why? And how?", APPROACH),
        pair("d", "How can we segment cells?", "2.1 Network Architecture " + APPROACH),
        pair("e", "How can we segment cells?", APPROACH + " See Table 3: the results."),
        pair("f", "How can we segment cells?", APPROACH + " We call def train(x): x += 1."),
        pair("g", "How can we segment cells?", APPROACH + " Code at https://example.org/x."),
        pair("h", "How can we segment cells?", "Too short an approach."),
        pair("i", "How can we segment cells\x00?", APPROACH),
        pair("j", "How can training be made independent of the batch size?", APPROACH + " Yes."),
    ]
    verdicts = RulesCurator().curate(pairs, {})
    reasons = {p.document_id: v.reason for p, v in zip(pairs, verdicts, strict=True)}
    assert [p.document_id for p, v in zip(pairs, verdicts, strict=True) if v.keep] == ["a"]
    assert "not one question" in reasons["b"] and "not one question" in reasons["c"]
    assert "section heading" in reasons["d"] and "caption" in reasons["e"]
    assert (
        "code" in reasons["f"] and "URL" in reasons["g"] and "approach of 4 words" in reasons["h"]
    )
    assert "control" in reasons["i"] and reasons["j"].startswith("duplicate:")
    assert "Paper a" in reasons["j"]


def test_the_curate_stage_writes_kept_and_rejected_pairs(tmp_path, papers_dir):
    from conftest import write_recipe

    from mlxtune.pipeline import run_recipe
    from mlxtune.recipe import load_recipe
    from mlxtune.records import read_jsonl

    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: c\npapers: {papers_dir}\nrun_dir: {tmp_path / 'run'}\nmodel: {{tiny: {{}}}}\n"
        "split: {per_category: {valid: 0, test: 0}}\ncurate: {use: rules, near_duplicate: 0.3}\n",
    )
    loaded, registry = load_recipe(recipe)
    run = run_recipe(loaded, registry, until="format")
    curated = list(read_jsonl(tmp_path / "run" / "curated.jsonl"))
    rejects = list(read_jsonl(tmp_path / "run" / "curation_rejects.jsonl"))
    pairs = list(read_jsonl(tmp_path / "run" / "pairs.jsonl"))
    assert len(curated) + len(rejects) == len(pairs) and rejects
    assert all(r["reason"].startswith("duplicate: ") for r in rejects)
    summary = run.manifest["stages"]["curate"]["summary"]
    assert f"{len(curated)} of {len(pairs)} pairs kept (rules); {len(rejects)} rejected" in summary
    train = list(read_jsonl(tmp_path / "run" / "data" / "train.jsonl"))
    assert len(train) == len(curated)


def test_the_llm_judge_scores_against_the_abstract_caches_and_resumes(tmp_path):
    from llm_server import FakeLLMServer

    from mlxtune.curate.judge import LLMJudgeCurator
    from mlxtune.errors import MlxtuneError

    approaches = {
        "a": APPROACH,
        "b": "A recurrent network reads each line of text from pixels and is trained with a "
        "connectionist temporal classification loss, so no segmentation into characters is needed.",
        "c": "Convolutions sample their input at learned offsets, which lets the receptive field "
        "follow the shape of each object; the offsets are trained with the rest of the network.",
    }
    pairs = [pair(x, f"How can we do {x} better?", approaches[x]) for x in "abc"]
    documents = {x: doc({"abstract": f"Paper {x} is about {x}."}) for x in "abc"}
    with FakeLLMServer() as server:
        server.judge_scores.update({"Paper a": 5, "Paper b": 2})  # c: no score in the reply
        options = {
            "summarizer": {
                "use": "openai", "base_url": server.base_url, "model": "m", "max_retries": 0
            }
        }  # fmt: skip
        judge = LLMJudgeCurator(LLMJudgeCurator.Options(**options, threshold=3))
        judge.cache_path = tmp_path / "curation.jsonl"
        server.script["Paper c"] = ["500"]
        with pytest.raises(MlxtuneError, match="could not score 1 of 3 pairs.*cached"):
            judge.curate(pairs, documents)
        asked = len(server.requests)
        verdicts = judge.curate(pairs, documents)
        assert len(server.requests) == asked + 1  # only the missing score was asked for again
        assert [v.keep for v in verdicts] == [True, False, True]
        assert verdicts[1].reason == "the judge scored it 2 (< 3)" and verdicts[0].score == 5
        assert "no score" in verdicts[2].reason
        assert any(
            "Title: Paper a\nAbstract: Paper a is about a." in r["prompt"] for r in server.requests
        )
        judge.curate(pairs, documents)
        assert len(server.requests) == asked + 1  # everything cached now


def test_papers_outside_category_folders_warn_and_a_failed_run_leaves_no_folder(
    tmp_path, papers_dir
):
    from click.testing import CliRunner
    from conftest import write_recipe

    from mlxtune.cli import cli

    loose = tmp_path / "loose"
    loose.mkdir()
    for path in sorted(papers_dir.rglob("*.pdf"))[:3]:
        (loose / path.name).write_bytes(path.read_bytes())
    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: l\npapers: {loose}\nrun_dir: {tmp_path / 'run'}\nmodel: {{tiny: {{}}}}\n",
    )
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--until", "extract"])
    assert result.exit_code == 0 and "3 of 3 papers sit directly in" in result.output
    # output that is not a terminal is not wrapped at 80 columns (file names stay whole)
    assert "move the papers into one folder per topic" in result.output
    assert any(len(line) > 150 and "sit directly in" in line for line in result.output.splitlines())
    empty = tmp_path / "nothing"
    empty.mkdir()
    recipe = write_recipe(
        tmp_path / "e.yaml",
        f"name: e\npapers: {empty}\nrun_dir: {tmp_path / 'run2'}\nmodel: {{tiny: {{}}}}\n",
    )
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe)])
    assert result.exit_code != 0 and "no papers" in result.output
    assert not (tmp_path / "run2").exists()


def test_a_reference_list_without_its_heading_is_cut():
    from mlxtune.extract.clean import strip_references

    body = [f"Line {i} of the paper's discussion, which is ordinary prose." for i in range(40)]
    cites = [
        f"[{i}] A. Author, B. Writer et al. A method for things. In Proc. CVPR, pp. {i}-{i + 9}, "
        f"20{10 + i % 10}." for i in range(1, 25)
    ]  # fmt: skip
    cut = strip_references("\n".join(body + cites))
    assert cut.endswith("Line 39 of the paper's discussion, which is ordinary prose.")
    assert strip_references("\n".join(body)) == "\n".join(body)  # prose alone is kept whole
    few = "\n".join(body + cites[:3])  # three citations at the end are not a list to cut
    assert strip_references(few) == few
