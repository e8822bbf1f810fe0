"""Issue 26: the heuristic summarizer reads a paper's problem from its structure, not from the
first sentence with a gap word: a sentence that solves a problem, a competition called a
"challenge" or a task called a "problem" is not the gap; the abstract's own problem comes first,
also when it is stated as a purpose, an aim, a finding or the sentence a "to solve this problem"
points back to; an abstract without a problem gets a question about what it studies."""

from __future__ import annotations

from mlxtune.records import Document
from mlxtune.summarize import roles
from mlxtune.summarize.heuristic import HeuristicSummarizer
from mlxtune.summarize.questions import as_question


def paper(title: str, **sections: str) -> Document:
    text = "\n\n".join(sections.values())
    return Document(
        id=title, path=f"{title}.pdf", category="c", title=title, text=text, sections=sections
    )


def summarize(doc: Document):
    pair = HeuristicSummarizer().summarize_one(doc)
    for item in pair.evidence:  # every pair stays grounded in the text
        assert " ".join(doc.text[item["start"] : item["end"]].split()) == item["text"]
    return pair


def test_solutions_competitions_and_tasks_are_not_the_gap():
    assert roles.role("The LSTM architecture was designed to overcome this problem.", 3) != (
        roles.PROBLEM
    )
    assert roles.role("An elegant solution to the first problem is given by bidirectional nets.", 2)
    assert roles.gap_strength("Using it we won the ISBI cell tracking challenge 2015.") == 0
    assert roles.gap_strength("It came first in the 2015 ILSVRC challenge.") == 0
    assert roles.gap_strength("We apply CNNs to structured prediction problems.") == 0
    assert roles.gap_strength("The problem of incomplete transcripts is apparent.") >= 2
    assert roles.gap_strength("The main challenge is the size of the data.") >= 2
    # ... and a solution stays a problem when it is contrasted ("avoid X, but still require Y")
    assert roles.role("HMMs avoid segmentation but still require careful tuning.", 3) == (
        roles.PROBLEM
    )


def test_the_abstracts_own_problem_beats_an_introductions_side_remark():
    doc = paper(
        "Few-Shot Segmentation of Cell Images",
        abstract="It is widely agreed that training deep segmentation networks requires "
        "thousands of annotated cell images. In this paper, we present a training strategy "
        "that makes the most of a few annotated images. With it we won the 2019 CTC challenge "
        "by a large margin.",
        introduction="Deep networks have long been used for image segmentation. While "
        "segmentation networks have existed for decades, their success was limited by the "
        "small size of the networks. Residual links were designed to overcome this problem.",
        method="We train the segmentation network with heavy elastic augmentation of the few "
        "annotated images that exist.",
    )
    pair = summarize(doc)
    assert pair.question == (
        "How can training deep segmentation networks do without thousands of annotated cell images?"
    )


def test_problems_stated_as_purpose_aim_finding_or_pointed_back_to():
    assert (
        as_question(
            "To handle the problem of detecting objects at many sizes, we design a pyramid module."
        )
        == "How can we handle the problem of detecting objects at many sizes?"
    )
    assert as_question("We observe two shortcomings: slow decoding and repeated words.") == (
        "How can one avoid slow decoding and repeated words?"
    )
    assert as_question("We identify a weakness of GRU networks reading unsegmented streams.") == (
        "How can we overcome the weakness of GRU networks reading unsegmented streams?"
    )
    doc = paper(
        "Gated Networks for Music Recognition",
        abstract="Optical music recognition aims to read scores from scanned pages of old "
        "manuscripts. Inspired by recent recurrent models, we propose a gated network for "
        "solving this problem. Experiments show that it beats earlier systems.",
        introduction="Music recognition is hard because notes overlap in dense passages.",
    )
    pair = summarize(doc)
    assert pair.question == (
        "How can optical music recognition read scores from scanned pages of old manuscripts?"
    )
    assert pair.approach.startswith("Inspired by recent recurrent models, we propose a gated")


def test_an_abstract_without_a_problem_asks_what_it_studies():
    compared = paper(
        "Keyword Spotting with Recurrent Networks",
        abstract="In this paper, we present a gated recurrent network for keyword spotting. We "
        "compare gated and plain recurrent networks on the task of keyword spotting in noisy "
        "speech, using two public corpora. Gated networks outperform plain ones.",
        introduction="Plain recurrent networks have difficulty learning long dependencies. An "
        "elegant solution to this problem is given by gates.",
    )
    assert summarize(compared).question == (
        "Which of gated and plain recurrent networks does better on the task of keyword "
        "spotting in noisy speech?"
    )
    survey = paper(
        "A Survey of Transfer Learning",
        abstract="This article gives an overview of transfer learning, particularly in vision. "
        "It introduces the common methods and discusses recent advances.",
        introduction="In hindsight, however, the skills a student learned in one sport turn out "
        "to matter for another one.",
    )
    assert summarize(survey).question == "How is transfer learning done, and which way is better?"


def test_a_question_the_abstract_raises_wins_and_method_proposals_reach_the_approach():
    doc = paper(
        "Residual Connections in Wide Networks",
        abstract="Residual connections gave state-of-the-art results in the 2015 ILSVRC "
        "challenge. This raises the question of whether wide networks can benefit from "
        "residual connections. We give clear evidence that they train faster.",
        introduction="Wide networks are costly to train.",
        method="Our network stacks wide blocks of convolutions with batch normalization. Each "
        "block has three convolutions and a pooling layer of its own. The blocks are stacked "
        "in four stages of growing width. We use stochastic gradient descent with momentum. "
        "Every stage halves the resolution of its input maps. We also propose scaling the "
        "residuals down by a constant before the addition, which keeps training stable.",
    )
    pair = summarize(doc)
    assert pair.question == "Can wide networks benefit from residual connections?"
    assert "We also propose scaling the residuals down" in pair.approach


def test_a_limitation_that_gives_its_cause_is_not_asked_why_back():
    assert as_question(
        "Deep fully connected networks are hard to train because activations drift."
    ) == (
        "Deep fully connected networks are hard to train because activations drift: how can this "
        "be overcome?"
    )
    assert as_question("CNNs are inherently limited to rigid shapes due to their fixed grids.") == (
        "CNNs are inherently limited to rigid shapes due to their fixed grids: how can this be "
        "overcome?"
    )
    # without a cause the question asks for it
    assert as_question("Recurrent networks are hard to parallelize.") == (
        "Why are recurrent networks hard to parallelize, and how can this be overcome?"
    )
