"""Generation that does not loop: penalties, no-repeat n-grams, DRY, and a loop detector.

Everything here looks only at the answer's own tokens (never the prompt, whose chat-template
tokens include the end-of-sequence token) and never penalizes an end-of-sequence token, so these
settings can only make an answer stop sooner. The logic is plain Python over token ids, shared by
the mlx backend (as mlx-lm logits processors) and the torch plugin (as a transformers logits
processor); each backend only applies the returned adjustments to its own logits type.

- frequency / presence penalty (OpenAI's meaning): subtract `frequency * count + presence` from
  the logit of every token the answer already holds.
- no-repeat n-gram: a token that would complete an n-gram the answer already holds is banned.
- DRY ("don't repeat yourself", as in llama.cpp and koboldcpp): a token that would extend a
  repeat of an earlier stretch of the answer to length L >= allowed_length is penalized by
  `multiplier * base ** (L - allowed_length)`; sequence breakers (newlines, ':', quotes, '*')
  end a stretch, so lists and labelled lines are not punished.
- loop detector: once the answer's last `stop_loops` tokens have occurred twice before in it,
  generation ends with finish reason "loop" instead of spending the rest of `max_tokens`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

DRY_BREAKERS = ("\n", ":", '"', "*")
LOOP_OCCURRENCES = 3  # the tail n-gram seen for the third time: it has looped twice


@dataclass
class RepetitionControl:
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    no_repeat_ngram: int = 0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    protected: frozenset[int] = frozenset()  # end-of-sequence ids: never penalized
    breakers: frozenset[int] = frozenset()  # DRY sequence-breaker token ids

    @classmethod
    def from_sampling(cls, sampling: Any, **fields: Any) -> RepetitionControl:
        """The settings of `sampling` (an mlxtune Sampling) that are this class's fields."""
        own = {f.name for f in dataclass_fields(cls)} - {"protected", "breakers"}
        return cls(**{n: getattr(sampling, n) for n in own}, **fields)

    @property
    def active(self) -> bool:
        return bool(
            self.frequency_penalty
            or self.presence_penalty
            or self.no_repeat_ngram
            or self.dry_multiplier
        )

    def adjustments(self, answer: list[int]) -> tuple[dict[int, float], set[int]]:
        """(token -> amount to subtract from its logit, tokens to ban) for the next token."""
        penalties: dict[int, float] = {}
        if self.frequency_penalty or self.presence_penalty:
            for token, count in Counter(answer).items():
                penalties[token] = self.frequency_penalty * count + self.presence_penalty
        if self.dry_multiplier:
            for token, amount in dry_penalties(
                answer,
                self.dry_multiplier,
                self.dry_base,
                self.dry_allowed_length,
                self.breakers,
            ).items():
                penalties[token] = penalties.get(token, 0.0) + amount
        banned = banned_by_ngrams(answer, self.no_repeat_ngram) if self.no_repeat_ngram else set()
        for token in self.protected:
            penalties.pop(token, None)
            banned.discard(token)
        return penalties, banned


def banned_by_ngrams(answer: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already in the answer."""
    if n < 1 or len(answer) < n - 1:
        return set()
    if n == 1:
        return set(answer)
    prefix = tuple(answer[len(answer) - n + 1 :])
    return {
        answer[i + n - 1]
        for i in range(len(answer) - n + 1)
        if tuple(answer[i : i + n - 1]) == prefix
    }


def dry_penalties(
    answer: list[int],
    multiplier: float,
    base: float,
    allowed_length: int,
    breakers: frozenset[int] = frozenset(),
) -> dict[int, float]:
    """DRY: for each earlier place where the answer's tail already occurred, the token that
    followed it there would lengthen the repeat; penalize it by the repeat's length."""
    n = len(answer)
    if n < 2 or answer[-1] in breakers:
        return {}
    longest: dict[int, int] = {}
    last = answer[-1]
    for end in range(n - 1):  # an earlier occurrence of the tail ends at `end`
        if answer[end] != last:
            continue
        length = 0
        while (
            length <= end
            and answer[end - length] == answer[n - 1 - length]
            and answer[end - length] not in breakers
        ):
            length += 1
        following = answer[end + 1]
        if following not in breakers:
            longest[following] = max(longest.get(following, 0), length)
    return {
        token: multiplier * base ** (length - allowed_length)
        for token, length in longest.items()
        if length >= allowed_length
    }


@dataclass
class LoopDetector:
    """Says when the answer's last `window` tokens have occurred twice before in it."""

    window: int
    seen: Counter = field(default_factory=Counter)
    tokens: list[int] = field(default_factory=list)
    looped: bool = False

    def add(self, token: int) -> bool:
        """Take the next token; True (and `looped`) once the answer repeats itself."""
        self.tokens.append(token)
        if self.window < 1 or len(self.tokens) < self.window:
            return False
        gram = tuple(self.tokens[-self.window :])
        self.seen[gram] += 1
        self.looped = self.looped or self.seen[gram] >= LOOP_OCCURRENCES
        return self.looped


def breaker_ids(tokenizer: Any, vocab_size: int, characters: Iterable[str] = DRY_BREAKERS) -> set:
    """Token ids whose text holds a DRY sequence breaker (computed once per loaded model)."""
    marks = tuple(characters)
    found = set()
    for token_id in range(vocab_size):
        try:
            text = tokenizer.decode([token_id])
        except Exception:  # ids past the tokenizer's vocabulary (padded embeddings)
            continue
        if any(mark in text for mark in marks):
            found.add(token_id)
    return found
