"""A research question from the sentence that states a paper's problem, in the form the
sentence's own structure suggests: a question the paper asks is kept, "whether X can Y" becomes
"Can X Y?", "how to X" "How can we X?", "S requires X" "How can S do without X?", "S suffers from
X" "How can S avoid X?", "S fails to X" "How can S be made to X?", "S is limited ..." "Why is S
limited ..., and how can that be overcome?" (or, when the sentence says why, "S is hard to X
because Y: how can this be overcome?"). Only a sentence none of these fit gets a generic
form, and which one depends on its cue words, so that no one template dominates.
"""

from __future__ import annotations

import re

_ASKED = re.compile(r"(?:question|ask)[^:?]{0,40}:\s*(?P<q>[^?]{10,}\?)", re.I)
_HOW_TO = re.compile(r"\bhow to (?P<rest>.+)", re.I)
_EMBEDDED = re.compile(
    r"\b(?:question|questions|asks?|address|addresses|study|studies|investigate|investigates"
    r"|understand|unclear|know|determine|examine|explore|is|remains)\s+(?:of\s+)?"
    r"(?P<wh>whether|how far|how much|how many|how well|how|what|which|why|when)\s+"
    r"(?P<subj>(?:\S+\s+){0,12}?)(?P<aux>can|could|does|do|is|are|will|would|should|has|have)"
    r"\s+(?P<pred>.+)$",
    re.I,
)
_WHETHER_THERE = re.compile(r"\bwhether (?:there (?P<be>is|are)) (?P<rest>.+)$", re.I)
_OPENER = re.compile(
    r"^(?:however|but|yet|unfortunately|still|nevertheless|nonetheless|moreover|furthermore|"
    r"in addition|in practice|in particular|in general|thus|therefore|hence|indeed|also|"
    r"in contrast|on the other hand|at the same time|so far|to date|currently|traditionally)"
    r"\s*,?\s+",
    re.I,
)
_PROBLEM_OF = re.compile(
    r"\b(?:we|this paper|this work)\s+(?:\w+ly\s+)?(?:consider|address|study|tackle|investigate"
    r"|examine|explore)\w*\s+the (?:problem|task|question|challenge) of (?P<rest>.+)$",
    re.I,
)
_VERB = (
    r"(?P<verb>requires?|needs?|relies on|rely on|depends? on|suffers? from|suffer from|fails? to"
    r"|cannot|can not|are unable to|is unable to|(?:is|are) (?:\w+ly )?limited (?:to|in|by)"
    r"|lacks?|remains?|(?:is|are) (?:\w+ly )?(?:difficult|hard|expensive|costly|"
    r"rare|slow|unclear|not \w+))"
)
_CLAUSE = re.compile(rf"^(?P<subj>[^,;:]{{3,90}}?)\s+(?:\w+ly\s+)?{_VERB}\b\s*(?P<rest>.*)$", re.I)


# "There is large consent that ...", "It is well known that ...": a hedge before the claim
_HEDGE = re.compile(
    r"^(?:there is (?:a )?(?:\w+ )?(?:consent|consensus|agreement|evidence|belief) that|it is "
    r"(?:\w+ )?(?:known|accepted|believed|agreed|assumed) that|it has been (?:\w+ )?(?:shown|"
    r"observed|argued|noted) that|(?:many|most) (?:researchers|authors) (?:believe|agree) that)\s+",
    re.I,
)
_PURPOSE = re.compile(
    r"^(?:to|in order to)\s+(?P<verb>[a-z]+(?: with)?)\s+(?P<what>[^,]{8,140}?),\s*"
    r"(?:we|this paper|this work|our)\b",
    re.I,
)
_AIMS = re.compile(
    r"^(?P<subj>[^,;:]{3,80}?)\s+(?:aims?|seeks?|tries|try|attempts?|strives?) to (?P<rest>.+)$",
    re.I,
)
_FOUND = re.compile(
    r"\b(?:observe|find|identify|note|notice|point out|found|observed|identified)\w*\s+"
    r"(?P<what>(?:(?:a|an|the|two|three|several|some|one|main|major|key|important|severe|"
    r"serious)\s+)*(?:\w+\s+)?(?:shortcoming|drawback|limitation|weakness|deficiency|problem|"
    r"failure|flaw|bottleneck)s?)\s*(?P<link>:|of|in|with|when)\s*(?P<rest>.{8,})$",
    re.I,
)
_SELF = re.compile(r"^(?:this|these|it|we|our|the)\b|\b(?:paper|work|article|study|thesis)\b", re.I)
_OVERVIEW = re.compile(r"\b(?:overview|survey|review) of (?P<x>[^,.;:()]{3,80})", re.I)
_EXPLORES = re.compile(
    r"\b(?:exploration|study|analysis|investigation|examination) (?:of|on|into) "
    r"(?P<x>[^;:]{8,120}?)(?:,|$)",
    re.I,
)
_COMPARES = re.compile(
    r"\bwe (?:\w+ly )?(?:evaluate|compare|benchmark)\s+(?P<x>.{5,120}?)\s+(?:on|in|for)\s+"
    r"(?P<y>[^,;:]{5,100})",
    re.I,
)
_STUDIES = re.compile(
    r"\b(?:we|this (?:paper|work|article)) (?:\w+ly )?(?:study|studies|investigate\w?|analy[sz]e\w?"
    r"|examine\w?|explore\w?)\s+(?P<x>[^,;:]{8,120})",
    re.I,
)
_POINTING = ("this", "it", "that", "these", "they", "which", "there", "such")
_CAUSE = re.compile(r"\b(?:because|since|due to|owing to|as a result of)\b", re.I)
_SUBORDINATE = re.compile(
    r"\b(?:although|though|because|since|while|whereas|if|when|that|which|who|we|our|as)\b", re.I
)


def _lower_first(text: str) -> str:
    """Lowercase the first letter unless the word is an acronym or a name ("RNNs", "LSTM")."""
    word = text.split(" ", 1)[0]
    if len(word) > 1 and (word[1:].lower() != word[1:] or word.isupper()):
        return text
    return text[:1].lower() + text[1:]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _is_are(subject: str) -> str:
    head = subject.split()[-1] if subject.split() else ""
    return "are" if head.endswith("s") and not head.endswith("ss") else "is"


def _from_clause(body: str) -> str:
    found = _CLAUSE.match(body)
    if not found:
        return ""
    subj, verb, rest = found.group("subj").strip(), found.group("verb").lower(), found.group("rest")
    subj = _lower_first(subj)
    if _SUBORDINATE.search(subj) or subj.split()[0].lower() in _POINTING:
        return ""
    rest = rest.strip()
    if not rest and not verb.startswith(("is", "are")):
        return ""
    if verb.startswith(("require", "need", "rel", "depend")):
        return f"How can {subj} do without {rest}?"
    if verb.startswith("suffer"):
        return f"How can {subj} avoid {rest}?"
    if verb.startswith(("fail", "cannot", "can not", "are unable", "is unable")):
        return f"How can {subj} be made to {rest}?"
    if verb.startswith("lack"):
        return f"How can {subj} gain {rest}?"
    if verb.startswith("remain"):
        return f"{_upper_first(subj)} {verb} {rest}: how can this change?"
    be, adjective = verb.split(" ", 1)
    if _CAUSE.search(rest):  # the sentence gives the cause: asking "why" would ask it back
        return f"{_upper_first(subj)} {be} {adjective} {rest}: how can this be overcome?"
    return f"Why {be} {subj} {adjective}{' ' + rest if rest else ''}, and how can this be overcome?"


def _inverted(body: str) -> str:
    """ "... is whether context can be enlarged" -> "Can context be enlarged?"."""
    there = _WHETHER_THERE.search(body)
    if there:
        return f"{there.group('be').capitalize()} there {there.group('rest').strip()}?"
    found = _EMBEDDED.search(body)
    if not found or not found.group("subj").strip():
        return ""
    wh, aux = found.group("wh").lower(), found.group("aux").lower()
    subject, rest = found.group("subj").strip(), found.group("pred").strip()
    head = aux.capitalize() if wh == "whether" else f"{wh.capitalize()} {aux}"
    return f"{head} {subject} {rest}?"


# (cue words, form): the first whose cues the sentence has
GENERIC = (
    (re.compile(r"\b(?:challeng|difficult|hard)", re.I),
     "How can we address the problem that {clause}?"),
    (re.compile(r"\b(?:expensive|costly|slow|inaccura|nois|degrad|error|wrong)", re.I),
     "Given that {clause}, what would work better?"),
    (re.compile(r"\b(?:limit|drawback|shortcoming|bottleneck|constrain|prevent)", re.I),
     "What would it take to overcome the fact that {clause}?"),
    (re.compile(r"\b(?:but|however|still|yet|only)\b", re.I),
     "{Clause}: how could this be done differently?"),
    (re.compile(r"\b(?:not|no|never|rare|little|few|ignore)", re.I),
     "{Clause}: what would change that?"),
    (re.compile(r""), "{Clause}: what can be done about it?"),
)  # fmt: skip


def study_question(sentence: str) -> str:
    """A question from a sentence that says what a study looks at, for a paper whose abstract
    states no problem: "an overview of X" -> "How is X done, and which way is better?",
    "we evaluate X on Y" ->
    "Which of X does better on Y?", "we analyse X" -> "How does X work, and why?" (words the
    curator's evidence check counts as a question's form, curate/rules.py SCAFFOLD)."""
    body = sentence.rstrip(" .!;:")
    overview = _OVERVIEW.search(body)
    if overview:
        return f"How is {overview.group('x').strip()} done, and which way is better?"
    compares = _COMPARES.search(body)
    if compares and compares.group("y").split()[0].lower() not in _POINTING:
        x, y = compares.group("x").strip(), compares.group("y").strip()
        return f"Which of {x} does better on {y}?"
    studies = _STUDIES.search(body) or _EXPLORES.search(body)
    if studies:
        return f"How does {studies.group('x').strip()} work, and why?"
    return ""


def _stated(body: str) -> str:
    """Forms for a problem stated as a purpose, an aim or a finding."""
    purpose = _PURPOSE.match(body)
    if purpose:
        verb = purpose.group("verb").lower()
        return f"How can we {verb} {_lower_first(purpose.group('what').strip())}?"
    found = _FOUND.search(body)
    if found:
        what, rest = found.group("what").lower(), found.group("rest").strip()
        if found.group("link") == ":":
            return f"How can one avoid {_lower_first(rest)}?"
        head = what.split()[-1]
        return f"How can we overcome the {head} {found.group('link')} {rest}?"
    aims = _AIMS.match(body)
    if aims and not _SELF.search(aims.group("subj")):
        return f"How can {_lower_first(aims.group('subj').strip())} {aims.group('rest').strip()}?"
    return ""


def as_question(sentence: str) -> str:
    """One question from the sentence that states the problem."""
    asked = _ASKED.search(sentence)
    if asked:
        return _upper_first(asked.group("q").strip())
    if "?" in sentence:
        return _upper_first(_OPENER.sub("", sentence.split("?")[0].strip())) + "?"
    body = sentence.rstrip(" .!;:")
    how = _HOW_TO.search(body)
    if how:
        return f"How can we {how.group('rest').strip()}?"
    problem_of = _PROBLEM_OF.search(body)
    if problem_of:
        return f"How should one approach the problem of {problem_of.group('rest').strip()}?"
    inverted = _inverted(body)
    if inverted:
        return inverted
    body = _HEDGE.sub("", _OPENER.sub("", body))
    stated = _stated(body) or study_question(body)
    if stated:
        return stated
    clause = _from_clause(body)
    if clause:
        return clause
    text = _lower_first(body)
    form = next(form for cue, form in GENERIC if cue.search(text))
    return form.format(clause=text, Clause=_upper_first(text))
