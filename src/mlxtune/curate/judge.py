"""The `llm` curator: the rules first, then a language model scores each remaining pair's
faithfulness to its paper's abstract (1-5), and pairs under `threshold` are rejected.

The model is reached through an LLM summarizer's `complete` (`summarizer: {use: mlx, ...}` or
`{use: openai, base_url: ..., model: ...}`), so any backend a summarizer can use judges too, batched
or concurrent as it is there. Every score is appended to `<cache>/curation.jsonl` as it arrives,
keyed by the pair, the abstract and the judge's settings: a run stopped at any point (or a server
that went away) resumes with only the missing scores. A reply without a readable score keeps the
pair (the rules passed it) and says so in the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from ..cache import JsonlCache, cache_key
from ..components import Curator, Verdict
from ..errors import MlxtuneError
from ..evaluate.judge import parse_score
from ..hookspecs import hookimpl
from ..records import Document, Pair
from .rules import RulesCurator

PROMPT = """Rate how faithfully the research question and approach below summarize the paper
whose title and abstract follow, from 1 (unrelated or wrong) to 5 (accurate and specific).

Title: {title}
Abstract: {abstract}

Research question: {question}
Approach: {approach}

Reply with JSON: {{"score": <1-5>, "reason": "<one sentence>"}}"""


class LLMJudgeCurator(Curator):
    name = "llm"
    description = "the rules, then an LLM scores each pair's faithfulness to the abstract (1-5)"

    class Options(RulesCurator.Options):
        summarizer: dict[str, Any] = Field(
            default_factory=lambda: {"use": "openai"},
            description="the LLM summarizer whose model judges: {use: mlx|openai, ...its options}",
        )
        threshold: int = Field(3, ge=1, le=5, description="reject pairs scored below this")
        abstract_chars: int = Field(2000, ge=200, description="abstract (or text) shown")

    cache_path: Path | None = None  # <cache_dir>/curation.jsonl, from setup()
    registry: Any = None  # the recipe's registry (its plugin folders), from setup()

    def setup(self, *, cache_dir: Path, registry: Any) -> None:
        self.cache_path, self.registry = cache_dir / "curation.jsonl", registry

    def fingerprint(self) -> dict[str, Any]:
        judge = self.judge()
        return {**super().fingerprint(), "judge": judge.fingerprint(), "prompt": PROMPT}

    def judge(self) -> Any:
        from ..components import Completer
        from ..plugins import get_registry

        judge = (self.registry or get_registry()).build("summarizer", self.options.summarizer)
        if not isinstance(judge, Completer):
            raise MlxtuneError(
                f"curate.summarizer: '{judge.name}' cannot complete prompts; use mlx or openai"
            )
        return judge

    def curate(self, pairs: Sequence[Pair], documents: dict[str, Document]) -> list[Verdict]:
        rules = RulesCurator(RulesCurator.Options(**self.rules_options()))
        verdicts = rules.curate(pairs, documents)
        todo = [i for i, v in enumerate(verdicts) if v.keep]
        if not todo:
            return verdicts
        judge = self.judge()
        cache = JsonlCache(self.cache_path or Path("curation.jsonl"), check=_check_reply)
        prompts = {i: self.prompt(pairs[i], documents.get(pairs[i].document_id)) for i in todo}
        keys = {i: cache_key(prompts[i], judge.fingerprint(), self.options.threshold) for i in todo}
        missing = [i for i in todo if cache.get(keys[i]) is None]
        from ..summarize.llm import TransientError

        failed = []
        size = max(1, judge.group_size())
        for start in range(0, len(missing), size):  # cached a group at a time, as they arrive
            group = missing[start : start + size]
            replies = judge.complete([[{"role": "user", "content": prompts[i]}] for i in group])
            for index, reply in zip(group, replies, strict=True):
                if isinstance(reply, TransientError):
                    failed.append(reply)
                else:
                    cache.put(keys[index], {"reply": str(reply)})
        if failed:
            raise MlxtuneError(
                f"the judge could not score {len(failed)} of {len(todo)} pairs ({failed[0]}); "
                "the scores that arrived are cached: run again to do the rest"
            )
        for index in todo:
            verdicts[index] = self.verdict(str(cache.get(keys[index])["reply"]))
        return verdicts

    def rules_options(self) -> dict[str, Any]:
        return {k: getattr(self.options, k) for k in RulesCurator.Options.model_fields}

    def prompt(self, pair: Pair, doc: Document | None) -> str:
        abstract = doc.sections.get("abstract") or doc.text if doc is not None else ""
        return PROMPT.format(
            title=pair.title or "(untitled)",
            abstract=" ".join(abstract.split())[: self.options.abstract_chars] or "(none)",
            question=pair.question,
            approach=pair.approach,
        )

    def verdict(self, reply: str) -> Verdict:
        score = parse_score(reply)
        if score is None:
            return Verdict(True, f"the judge's reply had no score: {reply[:120]!r}")
        if score < self.options.threshold:
            return Verdict(
                False, f"the judge scored it {score} (< {self.options.threshold})", score
            )
        return Verdict(True, "", score)


def _check_reply(record: dict[str, Any]) -> None:
    """A cached verdict needs the judge's reply (a damaged line is judged again)."""
    if not isinstance(record.get("reply"), str):
        raise ValueError("no 'reply' text")


@hookimpl
def register_curators(register):
    register(LLMJudgeCurator)
