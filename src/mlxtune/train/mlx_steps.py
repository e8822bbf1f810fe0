"""The MLX side of the shared training loop: the compiled step, evaluation, files.

The step is compiled the way mlx-lm compiles its own (model, optimizer and random state as
compile inputs/outputs); gradients of the micro-batches of an accumulated step are summed inside
the compiled function. The loss is computed in one of three forms with one value: the head over
chunks of the learned targets where the model's head splits off and is frozen (chunked_loss.py,
the default: the whole logits never exist), the head on the learned targets only where it splits
off, or the head on every position (losses.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ..records import Example
from .backend import TrainingBackend
from .batching import Row, batch_arrays
from .chunked_loss import chunk_tokens, chunked_loss, head_is_frozen
from .failures import NonFinite
from .losses import choose_inputs, gathered_loss, masked_loss, split_head, unlikelihood_loss
from .mlx_distributed import Ranks


class MlxSteps(TrainingBackend):
    def __init__(
        self,
        net: Any,
        tokenizer: Any,
        optimizer: Any,
        options: Any,
        valid_rows: list[Row],
        output_dir: Path,
        sample_prompt: list[int] | None,
        ranks: Ranks | None = None,
    ):
        import mlx.core as mx

        self.ranks = ranks or Ranks(None)
        self.main = self.ranks.rank == 0
        self.net, self.tokenizer, self.optimizer, self.options = net, tokenizer, optimizer, options
        self.valid_rows, self.out, self.sample_prompt = valid_rows, output_dir, sample_prompt
        self.form, losses, self.eval_losses = loss_forms(net, options.chunked_loss)
        self.eval_form = self.form  # the unlikelihood term below changes only the training form
        self.compiled_state = [net.state, optimizer.state, mx.random.state]
        # the unlikelihood term needs every position's logits: trained in the masked form only;
        # evaluation keeps the plain cross-entropy, so validation losses stay comparable
        if options.unlikelihood:
            self.form = "masked"
            self.micro_steps = {"masked": self.make_step(unlikelihood_loss(options.unlikelihood))}
        else:
            self.micro_steps = {kind: self.make_step(fn) for kind, fn in losses.items()}
        self.grad: Any = None
        self.restored: dict[str, dict[str, Any]] = {}  # checked checkpoint arrays, not yet loaded
        net.train()
        mx.reset_peak_memory()

    def make_step(self, loss_fn: Callable) -> Callable:
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_map

        net, optimizer, accum = self.net, self.optimizer, self.options.grad_accumulation_steps
        loss_and_grad = nn.value_and_grad(net, loss_fn)
        combine = self.ranks.combine  # data parallel: the launch's mean gradient

        @partial(mx.compile, inputs=self.compiled_state, outputs=self.compiled_state)
        def micro_step(tokens, targets, previous, update):
            (loss, n), grad = loss_and_grad(net, tokens, targets)
            loss, n, grad = combine(loss, n, grad)
            if previous is not None:
                grad = tree_map(lambda a, b: a + b, grad, previous)
            finite = mx.array(True)
            if update:
                if accum > 1:
                    grad = tree_map(lambda g: g / accum, grad)
                finite = all_finite(grad)  # the summed gradient: a NaN in any part shows
                optimizer.update(net, grad)
                grad = None
            return loss, n, grad, finite

        return micro_step

    def batch(self, rows: list[Row], form: str) -> tuple[str, Any, Any]:
        import mlx.core as mx

        tokens, mask = batch_arrays(rows, max_width=self.options.max_seq_length)
        kind, targets = choose_inputs(mask, form)
        return kind, mx.array(tokens), mx.array(targets)

    # ------------------------------------------------------------ TrainingBackend

    def start_step(self, step: int, learning_rate: float) -> None:
        """The rate comes from the optimizer's own schedule (mlx-lm's, the same numbers as
        `learning_rate`; a test checks it), whose update count resumes with its state."""
        import mlx.core as mx

        # randomness (dropout) is a function of (seed, step): a resumed run repeats it
        mx.random.seed(self.options.seed * 1_000_003 + step)
        self.grad = None

    def micro_batch(self, rows: list[Row], last: bool) -> float:
        import mlx.core as mx

        kind, tokens, targets = self.batch(self.ranks.shard(rows), self.form)
        loss, n, self.grad, finite = self.micro_steps[kind](tokens, targets, self.grad, last)
        mx.eval(self.compiled_state, loss, n, self.grad, finite)
        if not finite.item():
            raise NonFinite("gradient")
        return loss.item()

    def evaluate(self) -> float:
        import mlx.core as mx

        net, o = self.net, self.options
        net.eval()
        total, count = mx.array(0.0), mx.array(0.0)
        ordered = sorted(self.valid_rows, key=len)
        limit = o.val_batches if o.val_batches > 0 else len(ordered)
        for b, i in enumerate(range(0, len(ordered), o.batch_size)):
            if b >= limit:
                break
            if b % self.ranks.size != self.ranks.rank:  # the batches are split over a launch
                continue
            kind, tokens, targets = self.batch(ordered[i : i + o.batch_size], self.eval_form)
            loss, n = self.eval_losses[kind](net, tokens, targets)
            total, count = total + loss * n, count + n
            mx.eval(total, count)
        total, count = self.ranks.total(total), self.ranks.total(count)
        net.train()
        return (total / count).item()

    def trainable(self) -> dict[str, Any]:
        from mlx.utils import tree_flatten

        return dict(tree_flatten(self.net.trainable_parameters()))

    def save_adapter(self) -> None:
        save_arrays(self.out / "adapters.safetensors", self.trainable())

    def save_checkpoint(self, directory: Path) -> tuple[list[str], dict[str, Any]]:
        from mlx.utils import tree_flatten

        save_arrays(directory / "last.safetensors", self.trainable())
        save_arrays(directory / "optimizer.safetensors", dict(tree_flatten(self.optimizer.state)))
        return ["last.safetensors", "optimizer.safetensors"], {}

    def verify_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        """Read both files and check them against this run's adapter and optimizer: the same
        names, shapes and dtypes, every value finite. Nothing is changed until all passed."""
        from mlx.utils import tree_flatten

        expected = {
            "last.safetensors": self.trainable(),
            "optimizer.safetensors": dict(tree_flatten(self.optimizer.state)),
        }
        self.restored = {
            name: read_arrays(directory / name, like) for name, like in expected.items()
        }

    def load_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        """Rank 0 reads the files (checked by `verify_checkpoint`); in a launch the other ranks
        get its arrays (they need no copy of the checkpoint: another machine's disk)."""
        weights: dict[str, Any] = {}
        optimizer: dict[str, Any] = {}
        if self.main:
            if not self.restored:
                self.verify_checkpoint(directory, state)
            weights, optimizer = (
                self.restored["last.safetensors"],
                self.restored["optimizer.safetensors"],
            )
            self.restored = {}
        weights = self.ranks.broadcast_arrays(weights)
        optimizer = self.ranks.broadcast_arrays(optimizer)
        self.net.load_weights(list(weights.items()), strict=False)
        for name, value in optimizer.items():
            set_leaf(self.optimizer.state, name, value)

    def share_state(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        return self.ranks.broadcast_json(state)

    def sample(self) -> str | None:
        """A short greedy answer, so a user watches outputs change (and any looping) in training."""
        if self.sample_prompt is None:
            return None
        import mlx.core as mx
        from mlx_lm.generate import generate_step

        self.net.eval()
        tokens = []
        eos = set(self.tokenizer.eos_token_ids)
        prompt = mx.array(self.sample_prompt)
        for token, _ in generate_step(prompt, self.net, max_tokens=self.options.sample_max_tokens):
            if int(token) in eos:
                break
            tokens.append(int(token))
        self.net.train()
        return self.tokenizer.decode(tokens)

    def barrier(self) -> None:
        self.ranks.barrier()

    def summary(self) -> dict[str, Any]:
        return {"processes": self.ranks.size} if self.ranks.size > 1 else {}

    def describe(self) -> str:
        return f" x {self.ranks.size} processes" if self.ranks.size > 1 else ""

    def peak_memory_gb(self) -> float | None:
        """The largest peak of the launch's processes (every rank asks at the same points, so
        the early memory check stops all of them or none)."""
        import mlx.core as mx

        return self.ranks.largest(mx.get_peak_memory() / 1e9)

    def finish(self, checkpoint_dir: Path) -> None:
        """Keep the last step's adapter beside the kept one (`last.safetensors`)."""
        last = checkpoint_dir / "last.safetensors"
        if last.is_file():
            last.replace(self.out / "last.safetensors")


def loss_forms(net: Any, chunked: bool) -> tuple[str, dict[str, Callable], dict[str, Callable]]:
    """(the form to train with, its losses for training, and for evaluation): every form keeps
    "masked" as the fallback for a batch the other cannot take. The first key is the preferred."""
    head = split_head(net)
    if head is None:
        return "masked", {"masked": masked_loss}, {"masked": masked_loss}
    if chunked and head_is_frozen(net):
        size = chunk_tokens(int(net.model.embed_tokens.weight.shape[0]))
        train = {"chunked": chunked_loss(head, size), "masked": masked_loss}
        evaluation = {"chunked": chunked_loss(head, size, train=False), "masked": masked_loss}
        return "chunked", train, evaluation
    gathered = {"gathered": gathered_loss(head), "masked": masked_loss}
    return "gathered", gathered, gathered


def save_arrays(path: Path, arrays: dict[str, Any]) -> None:
    """safetensors written atomically (a crash never leaves half a file under the name)."""
    import mlx.core as mx

    tmp = path.with_name(f".{path.stem}.tmp.safetensors")
    mx.save_safetensors(str(tmp), arrays)
    tmp.replace(path)


def all_finite(tree: Any) -> Any:
    """One boolean array: every value of every array in `tree` is finite. One sum per array (a
    NaN or an infinity carries into it): a single read of the values, no per-element mask; a
    sum past float32's 3.4e38 counts as non-finite, which it is for any trainable update."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    total = mx.array(0.0)
    for _, value in tree_flatten(tree):
        total = total + mx.sum(value).astype(mx.float32)
    return mx.isfinite(total)


def read_arrays(path: Path, like: dict[str, Any]) -> dict[str, Any]:
    """The arrays of a checkpoint file, if they are exactly `like`'s names, shapes and dtypes
    and all finite; else ValueError naming the file and the first difference."""
    import mlx.core as mx

    try:
        arrays = mx.load(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise ValueError(f"{path}: {str(exc).splitlines()[0]}") from None
    if set(arrays) != set(like):
        odd = sorted(set(arrays) ^ set(like))[:3]
        raise ValueError(f"{path}: its arrays are not this run's ({', '.join(odd)} differ)")
    for name, value in arrays.items():
        if value.shape != like[name].shape or value.dtype != like[name].dtype:
            raise ValueError(
                f"{path}: {name} is {value.dtype}{list(value.shape)}, this run's "
                f"{like[name].dtype}{list(like[name].shape)}"
            )
    for name, value in arrays.items():
        if mx.issubdtype(value.dtype, mx.floating) and not mx.all(mx.isfinite(value)).item():
            raise ValueError(f"{path}: {name} holds non-finite values")
    return arrays


def sample_prompt(tokenizer: Any, options: Any, valid: list[Example]) -> list[int] | None:
    """The prompt of the training samples: the recipe's question, else the first valid one."""
    from ..tokens import encode_prompt

    if not options.sample_max_tokens:
        return None
    if options.sample_question is not None:
        return list(tokenizer.encode(options.sample_question))
    first = valid[0]
    if first.messages is not None:
        return encode_prompt(tokenizer, Example(messages=first.messages[:-1]))
    if first.prompt:
        return encode_prompt(tokenizer, Example(prompt=first.prompt))
    return list(tokenizer.encode((first.text or "")[:200]))


def set_leaf(tree: Any, dotted: str, value: Any) -> None:
    """Put one leaf of a `tree_flatten` name back into a nested dict/list tree, in place (the
    compiled step holds the optimizer's state object, so it must not be replaced)."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
