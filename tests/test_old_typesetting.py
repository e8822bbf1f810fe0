"""Issue 26: papers set the way 1970s-90s typesetters set them extract into whole words.

Real PDFs built with fpdf2: narrow justified columns with words hyphenated at line ends (soft
hyphens, so the break falls wherever the line is full), technical words that occur once, and
compounds whose own hyphen falls at a line end; a kerned font's pieces, a letter-spaced heading
and a symbol-font page number."""

from __future__ import annotations

import random
import re
from pathlib import Path

from pdfgen import write_raw_pages

from mlxtune.extract.clean import clean_pages
from mlxtune.extract.pypdf_extractor import PypdfExtractor
from mlxtune.extract.repair import zipf
from mlxtune.extract.spacing import join_kerned, join_letter_spaced

COMMON = [
    "the",
    "of",
    "a",
    "model",
    "is",
    "in",
    "that",
    "we",
    "for",
    "our",
    "each",
    "when",
    "this",
    "which",
    "results",
    "data",
    "between",
    "method",
    "approach",
    "network",
    "training",
    "learning",
    "system",
    "input",
    "output",
    "values",
    "small",
    "large",
    "simple",
    "general",
    "important",
    "different",
    "previous",
    "following",
    "several",
    "problem",
    "structure",
    "function",
    "probability",
    "performance",
    "experiment",
    "analysis",
    "distribution",
    "representation",
    "information",
    "recognition",
    "classification",
    "sequence",
    "measurement",
    "procedure",
    "evaluation",
    "algorithm",
    "comparison",
    "description",
    "observation",
    "condition",
    "variable",
    "parameter",
    "estimate",
    "error",
    "signal",
    "quality",
    "pattern",
    "feature",
]
# technical words, each used once: many are not in English word lists at all
TECHNICAL = [
    "overparameterized",
    "eigendecomposition",
    "heteroscedastic",
    "reparameterization",
    "underfitting",
    "backpropagation",
    "autoencoders",
    "hyperparameters",
    "tokenization",
    "nonconvexity",
    "discretization",
    "regularizer",
    "minibatches",
    "convolutional",
    "deconvolution",
    "upsampling",
    "downsampling",
    "quantization",
    "interpolation",
    "normalization",
    "generalization",
    "initialization",
    "orthogonalization",
    "differentiable",
    "stochasticity",
    "bidirectional",
    "multilingual",
    "perplexity",
    "summarization",
    "subsampling",
    "nonlinearity",
    "eigenvectors",
    "spectrogram",
    "cepstral",
    "phonemes",
    "lexicographic",
    "isomorphism",
    "homomorphism",
    "polynomial",
    "logarithmic",
    "asymptotically",
    "combinatorial",
]
COMPOUNDS = ("state-of-the-art", "self-attention", "end-to-end", "real-world", "cross-entropy")
_VOWEL = set("aeiouy")


def hyphenate(word: str) -> str:
    """Soft hyphens where a typesetter might break `word` (before a consonant-vowel pair, or
    between two consonants after a vowel), at least two letters from either end."""
    out = []
    for i, char in enumerate(word):
        if 2 <= i <= len(word) - 3 and word[i - 1] in _VOWEL and char not in _VOWEL:
            out.append("\u00ad")
        out.append(char)
    return "".join(out)


def source_text(words: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    technical = list(TECHNICAL)
    sentences, count = [], 0
    while count < words:
        body = [rng.choice(COMMON) for _ in range(rng.randint(9, 16))]
        if technical and rng.random() < 0.1:
            body.insert(rng.randint(1, len(body)), technical.pop())
        if rng.random() < 0.15:
            body.insert(rng.randint(1, len(body)), rng.choice(COMPOUNDS))
        count += len(body)
        sentences.append(" ".join(body).capitalize() + ".")
    return " ".join(sentences)


def write_old_paper(path: Path, text: str) -> Path:
    """Two narrow justified columns a page, 9 pt Times, words broken at line ends."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(True, 15)
    pdf.add_page()
    pdf.set_font("Times", size=9)
    hyphenated = " ".join(w if "-" in w else hyphenate(w) for w in text.split())
    with pdf.text_columns(
        ncols=2, gutter=6, text_align="JUSTIFY", l_margin=40, r_margin=40
    ) as cols:
        cols.write(text="ON THE RECOGNITION OF SPEECH PATTERNS\n\nAbstract\n" + hyphenated)
    pdf.output(str(path))
    return path


def test_line_break_hyphens_of_an_old_two_column_paper_are_under_one_per_10k_words(tmp_path):
    text = source_text(10_000)
    pdf = write_old_paper(tmp_path / "old.pdf", text)
    doc = PypdfExtractor().extract(pdf, "speech")
    assert doc.ok, doc.reason
    raw = "\n".join(p.extract_text() for p in __import__("pypdf").PdfReader(pdf).pages)
    breaks_made = len(re.findall(r"[a-z]-\n[a-z]", raw))
    assert breaks_made > 300  # the layout really does break hundreds of words at line ends
    known = {w.lower().strip(".") for w in text.split()} | {"on", "recognition", "speech"}
    tokens = [w.lower().strip(".,") for w in doc.text.split()]
    broken = [w for w in tokens if w and w not in known and w not in ("abstract", "patterns")]
    assert len(broken) / len(tokens) * 1e4 < 1, broken[:20]
    once = [w for w in TECHNICAL if text.count(w) == 1]
    assert sum(w in doc.text for w in once) == len(once)  # words written once, rare or unknown
    for compound in COMPOUNDS:  # real compounds keep their hyphens, also broken at a line end
        assert compound.replace("-", "") not in doc.text.replace("\n", " ")


# a hyphenation dictionary breaks technical words after their prefix; none of these is in the
# English word list, and each occurs once
PREFIXED = [
    (b"We fit an over-", b"parameterized model and avoid under-", b"fitting by early stopping."),
    (b"Each sub-", b"word unit has an eigen-", b"decomposition of its own."),
    (b"The super-", b"pixels are grouped before over-", b"smoothing sets in."),
    (b"We use micro-", b"batches and back-", b"propagating through time."),
    (b"Un-", b"normalized scores and hyper-", b"networks are compared."),
]


def test_technical_words_broken_after_a_prefix_are_joined_and_compounds_kept(tmp_path):
    lines = [b"ON SMALL MODELS", b"Abstract"]
    for first, second, third in PREFIXED:
        lines += [first, second, third]
    lines += [
        b"A self-",
        b"attention layer gives state-of-the-",
        b"art results.",
        b"We study semi-",
    ]
    lines += [b"supervised learning end-to-", b"end."]
    doc = PypdfExtractor().extract(write_raw_pages(tmp_path / "p.pdf", [lines]), "ml")
    assert doc.ok, doc.reason
    text = " ".join(doc.text.split())
    for word in (
        "overparameterized",
        "underfitting",
        "subword",
        "eigendecomposition",
        "superpixels",
        "oversmoothing",
        "microbatches",
        "backpropagating",
        "Unnormalized",
        "hypernetworks",
    ):
        assert word in text, (word, text)
    for compound in ("self-attention", "state-of-the-art", "semi-supervised", "end-to-end"):
        assert compound in text, (compound, text)


def test_kerned_pieces_and_letter_spaced_headings_become_words():
    kerned = (
        "Con v olutional Net w orks for Images, Sp eec h, and Time-Series\n"
        "The top ology of the input is en tirely ignored, and the net w ork's\n"
        "w eigh ts m ust b e learned. Lo cal features are com bined o v er all\n"
        "lay ers; in to the second la y er the c haracters are fed.\n"
    ) * 3
    counts: dict[str, int] = {}
    fixed = join_kerned(kerned, counts, zipf)
    for word in (
        "Convolutional Networks",
        "Speech",
        "topology",
        "entirely",
        "network's",
        "weights must be learned",
        "Local features are combined",
        "layer the characters",
    ):
        assert word in fixed, (word, fixed[:300])
    assert "over all" in fixed  # "o v er all": a common word is not swallowed into "overall"
    # a normal paper's formulas and short words are left alone (too few pieces to be kerned)
    normal = "We go on to the next step, as it is in the paper, and train the network.\n" * 20
    normal += "Let f or g be a map from x to y in the set.\n"
    assert join_kerned(normal, {}, zipf) == normal
    assert join_letter_spaced("A B S T R A C T", zipf) == "ABSTRACT"
    assert join_letter_spaced("i n t r o d u c t i o n to w o r d s", zipf) == (
        "introduction to words"
    )
    assert join_letter_spaced("points x y z and A B C D", zipf) == "points x y z and A B C D"


def test_symbol_font_page_numbers_and_ligature_slashes_do_not_reach_the_text():
    header = "L eCun /& Bengio/: Networks for Images/, Speech/, and Time/-Series"
    body = (
        "Fully connected nets have a de/ficiency/: they ignore the /first layer/'s topology/, "
        "and a /fixed input /field must be centered/. The main drawback is that they have no "
        "built/-in invariance with respect to translations/, or"
    )
    ends = ("shapes", "images", "letters", "spectra", "words", "digits", "strokes")
    pages = [
        f"{header}\n/{n}\n{body}\nlocal distortions of the {end}/.\n"
        for n, end in zip(range(2, 9), ends, strict=True)
    ]
    text = clean_pages(pages)
    assert "deficiency" in text and "first layer" in text and "fixed input field" in text
    assert "or\nlocal distortions" in text  # the page number "/3" went with the header
    assert not re.search(r"^\d+$", text, re.M) and "Bengio" not in text
