"""`mlxtune serve`: the tuned model behind an OpenAI-compatible HTTP API.

`/v1/chat/completions` (the last user message is the research question; earlier user/assistant
turns are the conversation, as `mlxtune chat` keeps it), `/v1/completions` (the prompt is the
question) and `/v1/models`, streaming (server-sent events) or not. Every question goes through
the recipe's formatter, exactly as `mlxtune ask` builds its prompt, so a client gets the answer
`ask` gives; the recipe's `ask:` section gives the sampling defaults, and a request's values
override them under the same rules (mlxtune.sampling).

We serve with the standard library rather than wrap `mlx_lm.server`: that server applies the
model's chat template to the client's messages, not the formatter's training prompt, and knows
nothing of adapters trained on a completion-style prompt. One thread owns the model
(`worker`); request threads parse, check and queue (`requests`, `http`); stop strings are
matched on the way out (`stops`).
"""

from .http import Server, make_server
from .worker import GenerationWorker

__all__ = ["GenerationWorker", "Server", "make_server"]
