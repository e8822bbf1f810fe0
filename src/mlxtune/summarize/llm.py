"""What every LLM summarizer shares: prompts, chunking, the three rounds and the repair retry
(reading a reply as a pair is replies.py).

A subclass only says how to complete a list of chat conversations (`complete`): the local `mlx`
summarizer batches them through mlx-lm, the `openai` one sends them concurrently to a server.
Documents are taken a group at a time through three rounds, each one call to `complete`:

1. map: papers longer than `chunk_chars` are cut into chunks and each chunk becomes short notes;
2. pair: one prompt per paper (its text, or its title, abstract and notes) asks for JSON;
3. repair: replies that are not readable JSON get one repair prompt; still unreadable, the paper
   is recorded as failed with the raw reply kept.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..components import ComponentOptions, Summarizer, SummaryFailure
from ..errors import MlxtuneError
from ..records import Document, Pair, sha256_json
from .replies import parse_pair, strip_thinking

PROMPTS_DIR = Path(__file__).parent / "prompts"
SECTION_ORDER = ("abstract", "introduction", "method", "experiments", "conclusion")
Messages = list[dict[str, str]]


class TransientError(Exception):
    """A completion that failed for a reason that may pass (timeout, server down)."""


class LoopedReply(str):
    """A reply the loop detector cut short: it began repeating itself."""


# the pair's JSON schema: both fields required, nothing else; the lengths bound what a reply
# that loops inside a string can cost
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


def paper_text(doc: Document) -> str:
    """The paper's useful sections in reading order (front matter only if nothing else)."""
    parts = [
        f"{name.title()}\n{doc.sections[name]}" for name in SECTION_ORDER if doc.sections.get(name)
    ]
    return "\n\n".join(parts) if parts else doc.text


def chunk_text(text: str, size: int, limit: int) -> list[str]:
    """Cut at paragraph (then sentence, then hard) boundaries into pieces of at most `size`."""
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        units = [paragraph] if len(paragraph) <= size else _hard_split(paragraph, size)
        for unit in units:
            if current and len(current) + len(unit) + 2 > size:
                pieces.append(current)
                current = ""
            current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces[:limit]


def _hard_split(paragraph: str, size: int) -> list[str]:
    sentences = re.split(r"(?<=[.!?])\s+", paragraph)
    out, current = [], ""
    for sentence in sentences:
        while len(sentence) > size:
            out.append(sentence[:size])
            sentence = sentence[size:]
        if current and len(current) + len(sentence) + 1 > size:
            out.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    return [*out, current] if current else out


Completion = str | TransientError


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
        }

    def output_options(self) -> tuple[str, ...]:
        """Options that change the replies (and so belong in the cache key)."""
        return (
            "max_tokens",
            "temperature",
            "chunk_chars",
            "max_chunks",
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
        size = self.group_size()
        for start in range(0, len(documents), size):
            yield from self._summarize_group(documents[start : start + size])

    def _summarize_group(self, docs: Sequence[Document]) -> Iterator[Pair | SummaryFailure]:
        failed: dict[str, TransientError] = {}
        texts = {doc.id: paper_text(doc) for doc in docs}
        notes = self._notes(docs, texts, failed)
        pending = [doc for doc in docs if doc.id not in failed]
        conversations = {doc.id: self._pair_conversation(doc, texts, notes) for doc in pending}
        replies, retried = self._pair_replies(pending, conversations)
        raw: dict[str, str] = {}
        repair = []
        for doc, reply in zip(pending, replies, strict=True):
            if isinstance(reply, TransientError):
                failed[doc.id] = reply
                continue
            raw[doc.id] = reply
            try:
                yield self._pair(doc, *parse_pair(reply), retried=doc.id in retried)
            except ValueError:
                repair.append(doc)
        yield from self._repaired(repair, raw, retried, failed)
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

    def _pair_replies(
        self, pending: list[Document], conversations: dict[str, Messages]
    ) -> tuple[list[Completion], set[str]]:
        """Round 2 (pair): the replies, a looped one asked once more with stronger penalties
        (instead of paying for the loop again); also the ids that were asked twice."""
        replies = self.complete_pairs([conversations[doc.id] for doc in pending])
        looped = [
            doc for doc, r in zip(pending, replies, strict=True) if isinstance(r, LoopedReply)
        ]
        if not looped:
            return replies, set()
        again = self.complete_pairs([conversations[doc.id] for doc in looped], retry=True)
        second = dict(zip([doc.id for doc in looped], again, strict=True))
        replies = [second.get(doc.id, reply) for doc, reply in zip(pending, replies, strict=True)]
        return replies, {doc.id for doc in looped}

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
