"""What every LLM summarizer shares: prompts, the three rounds and the repair retry (what the
model reads of a paper is reading.py; reading a reply as a pair, replies.py).

A subclass says how to complete a list of chat conversations (`complete`; `stream_pairs` if it
can hand replies over as they finish): `mlx` batches them through mlx-lm, `openai` sends them
concurrently to a server. Papers, shortest first (a batch is padded to its longest prompt), go a
group at a time through three rounds:

1. map (`read: chunks`): papers longer than `chunk_chars` are cut into chunks and each chunk
   becomes short notes; with `read: excerpt` (the `mlx` default) each paper is one excerpt and
   this round does not run;
2. pair: one prompt per paper (its text or excerpt, or its title, abstract and notes) asks for JSON;
3. repair: replies that are not readable JSON get one repair prompt; still unreadable, the paper
   is recorded as failed with the raw reply kept, or (`fallback: heuristic`) summarized by the
   heuristic summarizer, as is a pair the rules curator would reject (fallback.py).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..components import ComponentOptions, Summarizer, SummaryFailure
from ..errors import MlxtuneError
from ..records import Document, Pair, sha256_json
from .fallback import replace_failure, replace_unusable
from .reading import chunk_text, excerpt, paper_text
from .replies import parse_pair, strip_thinking

PROMPTS_DIR = Path(__file__).parent / "prompts"
Messages = list[dict[str, str]]


class TransientError(Exception):
    """A completion that failed for a reason that may pass (timeout, server down)."""


class LoopedReply(str):
    """A reply the loop detector cut short: it began repeating itself."""


# the pair's JSON schema: lengths bound a reply looping in a string. A stricter one (a "?" at the
# end, 100+ characters of approach) gave SmolLM2-135M 4 of 9 readable pairs, not 9, at 2x the time
PAIR_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 10, "maxLength": 300},
        "approach": {"type": "string", "minLength": 20, "maxLength": 1200},
    },
    "required": ["question", "approach"],
    "additionalProperties": False,
}


class LLMOptions(ComponentOptions):
    prompt_file: str | None = Field(
        None,
        description="template asking for the JSON pair; placeholders {title} {category} "
        "{text}; default: the built-in summarize/prompts/pair.md",
    )
    chunk_prompt_file: str | None = Field(
        None, description="template for notes on one chunk: {title} {part} {parts} {text}"
    )
    repair_prompt_file: str | None = Field(
        None, description="template turning an unreadable reply into JSON: {raw}"
    )
    system_prompt_file: str | None = Field(None, description="system message")
    max_tokens: int = Field(512, ge=1, description="longest reply per prompt")
    temperature: float = Field(0.0, ge=0, description="0: greedy, reproducible")
    chunk_chars: int = Field(
        12000, ge=500, description="papers longer than this are summarized chunk by chunk"
    )
    max_chunks: int = Field(6, ge=1, description="at most this many chunks per paper")
    read: Literal["chunks", "excerpt"] = Field(
        "chunks",
        description="chunks: the whole paper, a notes round on each chunk first; excerpt: one "
        "prompt of the abstract, the introduction's problem and contribution sentences and the "
        "method's opening (fast on small machines)",
    )
    excerpt_chars: int = Field(2400, ge=500, description="the excerpt's length (read: excerpt)")
    fallback: Literal["none", "heuristic"] = Field(
        "none",
        description="a paper whose reply cannot be read as a pair: recorded as failed (none), "
        "or summarized by the heuristic summarizer (heuristic: also a pair the rules curator "
        "would reject), its pair's decoding saying why",
    )
    structured: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema",
        description="constrain the pair replies to the pair's JSON schema (mlx: llguidance; "
        "servers: response_format), to any JSON object, or not at all",
    )
    frequency_penalty: float = Field(
        0.0, ge=0, description="minus this times a token's count in the reply so far"
    )
    dry_multiplier: float = Field(
        0.8, ge=0, description="mlx: DRY penalty on tokens that extend a repeat (0: off)"
    )
    stop_loops: int = Field(
        32,
        ge=0,
        description="mlx: end a reply whose last N tokens occurred twice before and retry it "
        "once with stronger penalties (0: off)",
    )


@dataclass(frozen=True)
class Prompts:
    pair: str
    chunk: str
    repair: str
    system: str

    @classmethod
    def load(cls, options: LLMOptions) -> Prompts:
        def read(option: str | None, default: str) -> str:
            path = Path(option).expanduser() if option else PROMPTS_DIR / default
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise MlxtuneError(f"summarize prompt file {path}: {exc.strerror or exc}") from None

        return cls(
            pair=read(options.prompt_file, "pair.md"),
            chunk=read(options.chunk_prompt_file, "chunk.md"),
            repair=read(options.repair_prompt_file, "repair.md"),
            system=read(options.system_prompt_file, "system.md"),
        )

    @property
    def hash(self) -> str:
        return sha256_json([self.pair, self.chunk, self.repair, self.system])[:16]


def fill(template: str, **values: object) -> str:
    """Replace `{name}` placeholders literally, so JSON braces in a template need no escaping."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


Completion = str | TransientError
STREAM_GROUPS = 8  # read: excerpt: batches of papers streamed through one generator


class LLMSummarizer(Summarizer):
    """Base for summarizers backed by a chat model; see the module docstring."""

    Options = LLMOptions

    def __init__(self, options: LLMOptions | None = None):
        super().__init__(options)
        self.prompts = Prompts.load(self.options)

    @property
    def model_name(self) -> str:
        return str(getattr(self.options, "model", ""))

    @abstractmethod
    def complete(self, conversations: Sequence[Messages]) -> list[Completion]:
        """One reply (or a TransientError) per conversation, in order."""

    def group_size(self) -> int:
        """How many documents go through the three rounds together."""
        return 8

    def fingerprint(self) -> dict:
        return {
            "name": self.name,
            "model": self.model_name,
            "prompts": self.prompts.hash,
            **{k: getattr(self.options, k) for k in self.output_options()},
            # 2: a pair the rules would reject is replaced too (summarize/fallback.py)
            **({"fallback_version": 2} if self.options.fallback == "heuristic" else {}),
        }

    def output_options(self) -> tuple[str, ...]:
        """Options that change the replies (and so belong in the cache key)."""
        return (
            "max_tokens",
            "temperature",
            "chunk_chars",
            "max_chunks",
            "read",
            "excerpt_chars",
            "fallback",
            "structured",
            "frequency_penalty",
            "dry_multiplier",
            "stop_loops",
        )

    def complete_pairs(
        self, conversations: Sequence[Messages], *, retry: bool = False
    ) -> list[Completion]:
        """Replies that should be the pair's JSON: constrained where the summarizer can
        (`structured`); `retry` asks again with stronger repetition penalties after a loop."""
        return self.complete(conversations)

    def decoding(self, retried: bool = False) -> str:
        """How a pair's reply was decoded, for its provenance."""
        parts = [f"structured={self.options.structured}"]
        if retried:
            parts.append("retried after a loop")
        return "; ".join(parts)

    def summarize_one(self, document: Document) -> Pair:
        result = next(iter(self.summarize([document])))
        if isinstance(result, SummaryFailure):
            raise ValueError(result.reason)
        return result

    def summarize(self, documents: Sequence[Document]) -> Iterator[Pair | SummaryFailure]:
        """Groups of papers of about one length (shortest first), each through the rounds.
        With no notes round (`read: excerpt`) a group is `STREAM_GROUPS` batches, streamed:
        a finished reply makes room in the batch for the next paper, and its pair is yielded
        at once."""
        size = self.group_size()
        if self.options.read == "excerpt":
            size *= STREAM_GROUPS
        texts = {doc.id: self.text(doc) for doc in documents}
        ordered = sorted(documents, key=lambda doc: len(texts[doc.id]))
        by_id = {doc.id: doc for doc in documents}
        for start in range(0, len(ordered), size):
            group = ordered[start : start + size]
            for result in self._summarize_group(group, texts):
                if self.options.fallback != "heuristic":
                    yield result
                elif isinstance(result, SummaryFailure):
                    yield replace_failure(result, self.name)
                else:
                    yield replace_unusable(result, by_id[result.document_id], self.name)

    def text(self, doc: Document) -> str:
        """What the pair prompt reads of `doc` (before any notes round)."""
        if self.options.read == "excerpt":
            return excerpt(doc, self.options.excerpt_chars)
        return paper_text(doc)

    def _summarize_group(
        self, docs: Sequence[Document], texts: dict[str, str]
    ) -> Iterator[Pair | SummaryFailure]:
        failed: dict[str, TransientError] = {}
        notes = self._notes(docs, texts, failed) if self.options.read == "chunks" else {}
        pending = [doc for doc in docs if doc.id not in failed]
        conversations = {doc.id: self._pair_conversation(doc, texts, notes) for doc in pending}
        raw: dict[str, str] = {}
        repair: list[Document] = []
        looped: list[Document] = []
        for i, reply in self.stream_pairs([conversations[doc.id] for doc in pending]):
            doc = pending[i]
            if isinstance(reply, LoopedReply):  # asked once more below
                looped.append(doc)
            else:
                yield from self._read(doc, reply, raw, repair, failed, retried=False)
        if looped:  # a looped reply is asked once more with stronger penalties
            again = self.complete_pairs([conversations[doc.id] for doc in looped], retry=True)
            for doc, reply in zip(looped, again, strict=True):
                yield from self._read(doc, reply, raw, repair, failed, retried=True)
        yield from self._repaired(repair, raw, {doc.id for doc in looped}, failed)
        for doc in docs:
            if doc.id in failed:
                yield SummaryFailure(doc, str(failed[doc.id]), transient=True)

    def _notes(
        self, docs: Sequence[Document], texts: dict[str, str], failed: dict[str, TransientError]
    ) -> dict[str, list[str]]:
        """Round 1 (map): short notes on each chunk of the papers too long for one prompt."""
        options = self.options
        chunks = {
            doc.id: chunk_text(texts[doc.id], options.chunk_chars, options.max_chunks)
            for doc in docs
        }
        jobs = [
            (doc, i, part)
            for doc in docs
            if len(chunks[doc.id]) > 1
            for i, part in enumerate(chunks[doc.id])
        ]
        prompts = [
            fill(
                self.prompts.chunk,
                title=doc.title or "untitled",
                part=i + 1,
                parts=len(chunks[doc.id]),
                text=part,
            )
            for doc, i, part in jobs
        ]
        replies = self.complete([self._conversation(p) for p in prompts]) if jobs else []
        notes: dict[str, list[str]] = {}
        for (doc, _, _), reply in zip(jobs, replies, strict=True):
            if isinstance(reply, TransientError):
                failed[doc.id] = reply
            else:
                notes.setdefault(doc.id, []).append(strip_thinking(reply))
        return notes

    def stream_pairs(self, conversations: Sequence[Messages]) -> Iterator[tuple[int, Completion]]:
        """(index, reply) of each pair conversation, in any order, as each finishes; by
        default all at once from `complete_pairs`."""
        yield from enumerate(self.complete_pairs(conversations))

    def _read(
        self,
        doc: Document,
        reply: Completion,
        raw: dict[str, str],
        repair: list[Document],
        failed: dict[str, TransientError],
        *,
        retried: bool,
    ) -> Iterator[Pair]:
        """A pair reply: the pair, or the paper noted as failed or for the repair round."""
        if isinstance(reply, TransientError):
            failed[doc.id] = reply
            return
        raw[doc.id] = reply
        try:
            pair = self._pair(doc, *parse_pair(reply), retried=retried)
        except ValueError:
            repair.append(doc)
            return
        yield pair

    def _repaired(
        self,
        repair: list[Document],
        raw: dict[str, str],
        retried: set[str],
        failed: dict[str, TransientError],
    ) -> Iterator[Pair | SummaryFailure]:
        """Round 3 (repair): one repair prompt per unreadable reply; still unreadable, failed."""
        if not repair:
            return
        prompts = [
            fill(self.prompts.repair, raw=strip_thinking(raw[doc.id]) or raw[doc.id])
            for doc in repair
        ]
        replies = self.complete_pairs([self._conversation(p) for p in prompts], retry=True)
        for doc, reply in zip(repair, replies, strict=True):
            if isinstance(reply, TransientError):
                failed[doc.id] = reply
                continue
            try:
                yield self._pair(doc, *parse_pair(reply), retried=doc.id in retried)
            except ValueError as exc:
                cut = (
                    " (the repair was cut short as a loop)"
                    if isinstance(reply, LoopedReply)
                    else ""
                )
                yield SummaryFailure(
                    doc,
                    f"unparseable reply after one repair ({exc}){cut}",
                    raw=f"{raw[doc.id]}\n--- repair reply ---\n{reply}",
                )

    def _pair_conversation(
        self, doc: Document, texts: dict[str, str], notes: dict[str, list[str]]
    ) -> Messages:
        text = texts[doc.id]
        if doc.id in notes:
            abstract = doc.sections.get("abstract", "")
            listed = "\n".join(f"- Part {i + 1}: {n}" for i, n in enumerate(notes[doc.id]))
            text = (
                f"Abstract\n{abstract}\n\n" if abstract else ""
            ) + f"Notes on the paper\n{listed}"
        prompt = fill(
            self.prompts.pair, title=doc.title or "untitled", category=doc.category, text=text
        )
        return self._conversation(prompt)

    def _conversation(self, prompt: str) -> Messages:
        return [
            {"role": "system", "content": self.prompts.system},
            {"role": "user", "content": prompt},
        ]

    def _pair(self, doc: Document, question: str, approach: str, retried: bool = False) -> Pair:
        return Pair(
            decoding=self.decoding(retried),
            document_id=doc.id,
            category=doc.category,
            title=doc.title,
            question=question,
            approach=approach,
            summarizer=self.name,
            model=self.model_name,
            prompt_hash=self.prompts.hash,
        )
