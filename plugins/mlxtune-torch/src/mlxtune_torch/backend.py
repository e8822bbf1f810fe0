"""The `torch` generation backend: `ask`, `chat` and `compare` through transformers + PEFT,
with the same sampling options and the same prompts (mlxtune's tokenization) as the mlx backend.
An adapter in mlx-lm's format only is converted to PEFT on the fly."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from mlxtune.api import (
    Backend,
    ComponentOptions,
    Example,
    LoopDetector,
    MlxtuneError,
    RepetitionControl,
    Sampling,
    breaker_ids,
    encode_example,
    encode_prompt,
    mlx_to_peft,
)


def repetition_hooks(control: RepetitionControl, loops: LoopDetector, prompt_length: int):
    """mlxtune's repetition control as a transformers logits processor, and its loop detector
    as a stopping criterion (the same rules as the mlx backend's: mlxtune.repetition)."""
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class Penalties(LogitsProcessor):
        def __call__(self, input_ids, scores):
            penalties, banned = control.adjustments(input_ids[0, prompt_length:].tolist())
            if penalties:
                ids = torch.tensor(list(penalties), device=scores.device)
                amounts = torch.tensor(list(penalties.values()), dtype=scores.dtype)
                scores[:, ids] -= amounts.to(scores.device)
            if banned:
                scores[:, torch.tensor(sorted(banned), device=scores.device)] = -float("inf")
            return scores

    class Loops(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            looped = input_ids.shape[1] > prompt_length and loops.add(int(input_ids[0, -1]))
            return torch.tensor([looped], device=input_ids.device)

    return Penalties(), Loops()


class TorchBackend(Backend):
    name = "torch"
    description = "transformers + PEFT generation (CUDA, MPS or CPU)"

    class Options(ComponentOptions):
        device: str = Field("auto", description="auto: CUDA, then MPS, then CPU")
        dtype: str = Field("auto", description="auto: bf16 on CUDA where supported, else fp32")

    def load(self, model: str, adapter: Path | None = None, *, trust_remote_code: bool = False):
        from .loading import load_model, peft_dir, pick_device, pick_dtype

        self.device = pick_device(self.options.device)
        self.model, self.tokenizer = load_model(
            model,
            device=self.device,
            dtype=pick_dtype(self.options.dtype, self.device),
            trust_remote_code=trust_remote_code,
        )
        if adapter is not None:
            from peft import PeftModel

            adapter = Path(adapter)
            try:
                source = peft_dir(adapter)
            except FileNotFoundError:
                if not (adapter / "adapters.safetensors").is_file():
                    raise MlxtuneError(f"no adapter at {adapter}") from None
                source = mlx_to_peft(adapter, Path(tempfile.mkdtemp(prefix="mlxtune-peft-")))
            try:
                self.model = PeftModel.from_pretrained(self.model, str(source))
            except (RuntimeError, ValueError, KeyError) as exc:
                raise MlxtuneError(
                    f"adapter {adapter} does not fit model {model}: {str(exc).splitlines()[0]}"
                ) from None
        self.model.eval()
        self._breakers: frozenset[int] | None = None

    def context_length(self) -> int | None:
        """transformers keeps it in the config (mlx-lm models in `args`)."""
        config = getattr(self.model, "config", None)
        length = getattr(config, "max_position_embeddings", None)
        return int(length) if length else None

    def count_tokens(self, prompt: Example) -> int | None:
        return len(encode_prompt(self.tokenizer, prompt))

    def generate(self, prompt: Example, sampling: Sampling) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        tokens = encode_prompt(self.tokenizer, prompt)
        inputs = torch.tensor([tokens], device=self.device)
        eos = self.eos_ids()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        torch.manual_seed(sampling.seed)
        kwargs = {
            "input_ids": inputs,
            "attention_mask": torch.ones_like(inputs),
            "max_new_tokens": sampling.max_tokens,
            "eos_token_id": eos,
            "pad_token_id": eos[0],
            "streamer": streamer,
            "do_sample": sampling.temperature > 0,
            "repetition_penalty": sampling.repetition_penalty or 1.0,
        }
        if sampling.temperature > 0:
            kwargs.update(
                temperature=sampling.temperature, top_p=sampling.top_p, min_p=sampling.min_p or None
            )
        control = RepetitionControl.from_sampling(
            sampling,
            protected=frozenset(eos),
            breakers=self.breakers() if sampling.dry_multiplier else frozenset(),
        )
        loops = LoopDetector(sampling.stop_loops)
        penalties, stop_on_loop = repetition_hooks(control, loops, inputs.shape[1])
        if control.active:
            kwargs["logits_processor"] = [penalties]
        if sampling.stop_loops:
            kwargs["stopping_criteria"] = [stop_on_loop]
        result: dict = {}

        def run() -> None:
            with torch.no_grad():
                result["ids"] = self.model.generate(**kwargs)

        thread = threading.Thread(target=run)
        thread.start()
        yield from (piece for piece in streamer if piece)
        thread.join()
        generated = result["ids"][0, inputs.shape[1] :].tolist()
        self.answer_tokens = [t for t in generated if t not in eos]
        if generated and generated[-1] in eos:
            self.finish_reason = "stop"
        elif loops.looped:
            self.finish_reason = "loop"
        else:
            self.finish_reason = "length"

    def breakers(self) -> frozenset[int]:
        if getattr(self, "_breakers", None) is None:
            self._breakers = frozenset(breaker_ids(self.tokenizer, len(self.tokenizer)))
        return self._breakers

    def eos_ids(self) -> list[int]:
        config = getattr(self.model, "generation_config", None)
        ids = getattr(config, "eos_token_id", None) or self.tokenizer.eos_token_id
        return list(ids) if isinstance(ids, (list, tuple)) else [ids]

    def score(self, prompt: Example, completion: str) -> tuple[float, int]:
        import torch

        if prompt.messages is not None:
            example = Example(
                messages=[*prompt.messages, {"role": "assistant", "content": completion}]
            )
        else:
            example = Example(text=(prompt.prompt or "") + completion, prompt=prompt.prompt)
        tokens, offset = encode_example(self.tokenizer, example, mask_prompt=True)
        ids = torch.tensor([tokens], device=self.device)
        with torch.no_grad():
            logits = self.model(input_ids=ids[:, :-1]).logits.float()[0]
        losses = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
        start = max(offset, 1) - 1
        return losses[start:].sum().item(), len(tokens) - 1 - start
