"""Stop sequences over streamed text: hold back only what could still become a stop string,
so a client never sees a stop string or a piece of one (OpenAI, vLLM and llama.cpp leave the
stop string out of the answer)."""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that can be sent now; after a stop string, `stopped` is set and the rest
        is dropped."""
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text = self.pending + piece
        found = [(text.find(s), s) for s in self.stops if s in text]
        if found:
            self.stopped, self.pending = True, ""
            return text[: min(at for at, _ in found)]
        keep = self._partial(text)
        self.pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What was held back, once the answer ended without a stop string."""
        text, self.pending = self.pending, ""
        return "" if self.stopped else text

    def _partial(self, text: str) -> int:
        """The length of the longest end of `text` that begins some stop string."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
