"""Rhetorical roles of a paper's opening sentences, from cue phrases and position.

An abstract and an introduction move through a few steps (background, the problem or gap, the
contribution, the result); each step has its own stock phrases ("however ... remains", "we
propose", "we show that ... outperforms"). The role of a sentence is the step its cues name;
position breaks ties (an abstract's first sentence is background unless it says otherwise).
Front matter (affiliations, addresses, e-mails, headings) and notation are recognised here too,
so that neither ever becomes a question or an approach.
"""

from __future__ import annotations

import re

BACKGROUND, PROBLEM, CONTRIBUTION, RESULT = "background", "problem", "contribution", "result"

_QUESTION = re.compile(
    r"\?$|\b(?:raises? the question|the question (?:of|is|we)|we ask|open question)\b", re.I
)
_STRONG_GAP = re.compile(
    r"\b(?:however|but|unfortunately|problems?|challeng\w*|difficult\w*|hard to|limitation\w*|"
    r"limited|drawbacks?|bottleneck|weakness\w*|shortcoming\w*|suffer\w*|lacks?|lacking|fails?|"
    r"failure|cannot|unable|unclear|little (?:work|attention|is known)|remains?|expensive|costly|"
    r"prevents?|precludes?|deficien\w*)\b",
    re.I,
)
_WEAK_GAP = re.compile(
    r"\b(?:yet|although|despite|nevertheless|still|whereas|limits?|not (?:able|possible|well|"
    r"suited|clear|known)|rare(?:ly)?|degrad\w*|inaccurate|noisy|overfit\w*|vanishing|exploding|"
    r"issues?|constraint|ignore[sd]?|requires?|required|rel(?:y|ies) on|depends? on|not (?:yet )?"
    r"(?:been )?(?:used|applied|explored|studied|considered|investigated|addressed))\b",
    re.I,
)
DEPENDS = re.compile(r"\b(?:requires?|required|rel(?:y|ies) on|depends? on)\b", re.I)
# words that look like gap cues but name a task or an event: "the ISBI cell tracking
# challenge", "classification problems", "the optimization problem" (a problem in the sense of a
# task is one only with "the problem of/is/that", "this problem", "a key problem", ...)
_NAMED_CHALLENGE = re.compile(
    r"\bthe\s+(?:[A-Z]{2,}[\w-]*|(?:19|20)\d{2})(?:\s+(?:[a-z]+|[A-Z]{2,}[\w-]*|\d{4})){0,3}?"
    r"\s+challenges?\b",
)
_TASK_PROBLEM = re.compile(
    r"(?<!\bthe )(?<!\bthis )(?<!\bthese )(?<!\bthat )(?<!\ba )(?<!\ban )(?<!\bkey )"
    r"(?<!\bmain )(?<!\bmajor )(?<!\bopen )(?<!\bsuch )(?<!\bboth )(?<!\bsame )(?<!\bcore )"
    r"\b(?<=[a-z]{3} )problems?\b(?!\s+(?:of|is|are|that|with|here|remains?|in|for|when)\b|\s*:)"
)


_OURS = re.compile(r"^(?:our|in our)\s+(?!experience|experiments?|results?)", re.I)


def _gap_text(sentence: str) -> str:
    """The sentence with named challenges and task-sense "problems" masked."""
    return _TASK_PROBLEM.sub("_", _NAMED_CHALLENGE.sub("_", sentence))


_CONTRIBUTION = re.compile(
    r"\b(?:we|this (?:paper|work|article|letter|report|contribution)|our (?:paper|work|remedy|"
    r"method|approach|model|solution))\s+(?:\w+ly\s+|(?:also|further|then|here|now|instead|"
    r"therefore|thus|first|finally)\s+)?(?:propose|present|introduce|describe|"
    r"develop|design|define|offer|give|derive|formulate|devise|construct|build|revisit|"
    r"investigate|study|explore|analy[sz]e|compare|evaluate|apply|extend|use|employ|adopt|"
    r"provide|suggest|show how|aim|seek|consider|reformulate|is|are|make)\w*\b"
    r"|\bin this (?:paper|work|article|contribution)\b|\b(?:our|the proposed|a novel|a new) "
    r"(?:method|approach|model|architecture|framework|algorithm|technique)\b",
    re.I,
)
_RESULT = re.compile(
    r"\b(?:we (?:show|demonstrate|find|observe|obtain|achieve|report|verify)|experiments?|"
    r"results?|outperform\w*|state[- ]of[- ]the[- ]art|achiev\w*|improv\w*|accuracy|error rate|"
    r"benchmark\w*|\d+(?:\.\d+)?\s?%|BLEU|WER)\b",
    re.I,
)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+|\{[\w.,\s]+\}@|\be-?mail\b", re.I)
AFFILIATION = re.compile(
    r"\b(?:Universit(?:y|ät|é|e|at|a)|Institut(?:e|o)?|Department|Dept\.?|Laborator(?:y|ies|"
    r"io)|Labs?\b|School of|College|Faculty of|Inc\.|Corp(?:oration)?\.?|GmbH|Ltd\.?|Research "
    r"(?:Center|Centre)|Centre for|Center for|Academy of|Google Brain|AI Research)\b"
)
ADDRESS = re.compile(
    r"\b\d{1,5}\s+(?:[A-Z][a-z]+\.?\s+){0,3}(?:Street|St\.|Road|Rd\.?|Avenue|Ave\.?|Broadway"
    r"|Boulevard|Blvd\.?|Drive|Way|Parkway)\b|\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"
    r"|\b[A-Z]\d[A-Z]\s?\d[A-Z]\d\b|\b(?:P\.?\s?O\.? Box|phone|fax|tel\.?)\b|\b\d{3}-\d{3}-\d{4}\b",
    re.I,
)
DATE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?\s+\d{1,2},?\s+(?:19|20)\d{2}\b"
)
_HEADING = re.compile(
    r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.)\s+[A-Z]|\b(?:Abstract|Introduction|Related Work|"
    r"Conclusions?|References|Acknowledge?ments|Keywords|Index Terms)\b\s*[:.—-]?\s*[A-Z]?"
    r"|\b\d+(?:\.\d+)+\.?\s+[A-Z][a-z]+"
)
_CAPTION = re.compile(r"\b(?:Fig(?:ure)?|Table|Algorithm)\.?\s*\d", re.I)
_CODE_OR_URL = re.compile(r"https?://|www\.|[{}]|==|\+=|\bdef\s+\w+\(|\w\[\w+\]\s*=")
_NOTATION = re.compile(
    r"^(?:let|denote|consider|suppose|given)\b|\bdenot\w+\b|[=≤≥∈∑∏√←→×]|\(\d{1,3}\)\s*$"
    r"|\bwhere \w\b|\b[a-zA-Z]\s*\(\s*[a-zA-Z]\s*\)",
    re.I,
)
# "It is widely agreed that ...": "it" points forward, to the clause
_DUMMY_IT = re.compile(
    r"^it (?:is|has been) (?:\w+ )?(?:known|accepted|believed|agreed|assumed|shown|observed|"
    r"argued|noted|clear|evident) that\b",
    re.I,
)
_ANAPHORA = re.compile(r"^(?:this|these|that|those|it|they|such|here)\b", re.I)
_SECTION_TALK = re.compile(
    r"^(?:in this section|in the (?:following|next|remainder)|the (?:rest|remainder) of (?:this|"
    r"the) paper|section \d|this section|we (?:now|then|first|next) (?:describe|present|turn))",
    re.I,
)
_SINGLE_LETTERS = re.compile(r"(?<![\w.’'])(?![aAI]\b)[a-zA-Z](?![\w.’'])")  # symbols, not "a"


def front_matter(sentence: str) -> bool:
    """An affiliation, address, e-mail, heading or caption: never a question or an approach."""
    return bool(
        EMAIL.search(sentence)
        or AFFILIATION.search(sentence)
        or ADDRESS.search(sentence)
        or DATE.search(sentence)
        or _HEADING.search(sentence)
        or _CAPTION.search(sentence)
    )


def readable(sentence: str) -> bool:
    """Prose: enough words, mostly letters, no code, URL, front matter, and not words split into
    letters by a broken extraction ("Con v olutional")."""
    words = sentence.split()
    if not 6 <= len(words) <= 90 or _CODE_OR_URL.search(sentence) or front_matter(sentence):
        return False
    letters = sum(c.isalpha() for c in sentence)
    if letters < 0.65 * len(sentence):
        return False
    short = sum(len(w.strip(".,;:()")) <= 2 for w in words)
    return short <= 0.45 * len(words) and len(_SINGLE_LETTERS.findall(sentence)) <= 3


def loosely_readable(sentence: str) -> bool:
    """Prose whose words a broken extraction split into pieces ("Ho w can w e"): still not front
    matter, code or numbers."""
    words = sentence.split()
    letters = sum(c.isalpha() for c in sentence)
    return (
        8 <= len(words) <= 120
        and letters >= 0.6 * len(sentence)
        and not front_matter(sentence)
        and not _CODE_OR_URL.search(sentence)
    )


def notation(sentence: str) -> bool:
    """Setup and symbols ("Let f(θ) be ...", "... where x is ..."), not the idea."""
    return bool(_NOTATION.search(sentence)) or len(_SINGLE_LETTERS.findall(sentence)) > 1


def section_talk(sentence: str) -> bool:
    """Sentences about the paper's layout ("In this section, we ...")."""
    return bool(_SECTION_TALK.search(sentence))


def raises_question(sentence: str) -> bool:
    """Says what the paper asks ("This raises the question of whether ...", "We ask ...")."""
    return bool(_QUESTION.search(sentence))


def anaphoric(sentence: str) -> bool:
    """Opens with a word that points back ("This is a severe limitation ..."): it needs the
    sentence before it to make sense."""
    return bool(_ANAPHORA.search(sentence)) and not _DUMMY_IT.search(sentence)


_REPORTS = re.compile(
    r"\b(?:experiments?|results?|outperform\w*|achieves?|we (?:show|demonstrate|find|observe|"
    r"obtain|report|verify)|shows?|demonstrates?|won|wins|winning|first place|by a (?:large|wide) "
    r"margin|we (?:\w+ )?(?:improve|speed up|accelerate|reduce|increase))\b",
    re.I,
)
# a sentence that names a problem in order to say it is solved ("LSTM was designed to overcome
# this problem", "An elegant solution to the first problem is ...") answers, it does not ask
_SOLVES = re.compile(
    r"\b(?:overcom\w*|solution|solv\w+|remed\w+|alleviat\w+|mitigat\w+|circumvent\w*|"
    r"eliminat\w+|tackl\w+|avoids?|avoided)\b",
    re.I,
)


_CONTRAST = re.compile(r"\b(?:however|but|unfortunately|although|yet)\b", re.I)
# "We observe two shortcomings: ...", "We identify a weakness of LSTM networks ...": a finding
# that is the paper's problem
_FOUND_GAP = re.compile(
    r"\b(?:we|this paper|this work) (?:\w+ly )?(?:observe|find|identify|note|notice|point out|"
    r"found|observed|identified)\w*\b[^.]{0,60}?\b(?:shortcoming|drawback|limitation|weakness|"
    r"deficienc|problem|failure|flaw|bottleneck)",
    re.I,
)
# "... for solving this problem", "To overcome these limitations, ...": the sentence before it
# states the problem
POINTS_BACK = re.compile(
    r"\b(?:solv\w*|address\w*|tackl\w*|overcom\w*|handl\w*|alleviat\w*|remed\w*|mitigat\w*|"
    r"deal with|cope with)\s+(?:this|these|those|such|the above|that|both)\s+(?:\w+\s+)?"
    r"(?:problems?|issues?|challenges?|limitations?|difficult\w*|shortcomings?|drawbacks?)\b",
    re.I,
)
# "To handle the problem of segmenting objects at multiple scales, we design ...": a
# contribution that names its problem in a purpose clause
PURPOSE = re.compile(
    r"^(?:to|in order to)\s+(?P<verb>handle|address|tackle|solve|overcome|deal with|alleviate|"
    r"mitigate|avoid|remedy|cope with|reduce|close|bridge|remove|eliminate|prevent)\s+"
    r"(?P<what>[^,]{8,140}?),\s*(?:we|this paper|this work|our)\b",
    re.I,
)


def role(sentence: str, position: int) -> str:
    """The rhetorical role of a sentence at `position` in its section."""
    if _QUESTION.search(sentence) or _FOUND_GAP.search(sentence):
        return PROBLEM
    if _CONTRIBUTION.search(sentence) and not _REPORTS.search(sentence):
        return CONTRIBUTION
    if _OURS.match(sentence):  # "Our reparameterization ... does not ...": the paper's own idea
        return CONTRIBUTION
    if _REPORTS.search(sentence) and not _CONTRAST.search(sentence):
        return RESULT
    masked = _gap_text(sentence)
    if _STRONG_GAP.search(masked) or _WEAK_GAP.search(masked):
        if _SOLVES.search(sentence) and not _CONTRAST.search(sentence):
            return BACKGROUND
        return PROBLEM
    if _RESULT.search(sentence) and position > 0:
        return RESULT
    return BACKGROUND


def gap_strength(sentence: str) -> int:
    """How many gap cues a sentence carries (a tie-break between problem sentences)."""
    masked = _gap_text(sentence)
    strong, weak = _STRONG_GAP.findall(masked), _WEAK_GAP.findall(masked)
    return 2 * len(strong) + len(weak) + 4 * bool(_QUESTION.search(sentence))
