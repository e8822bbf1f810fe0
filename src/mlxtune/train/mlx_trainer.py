"""LoRA, DoRA, QLoRA and full fine-tuning with MLX.

Built from mlx-lm's parts (model loading, `linear_to_lora_layers`, learning-rate schedules,
`grad_checkpoint`) around the loop every trainer shares (loop.py), because what this project
needs lives inside the loop: evaluation at a fraction of the steps with the best adapter kept,
early stopping, packing with an exact per-token loss mask, a sample answer at each evaluation,
and resuming a crashed run from its last checkpoint with the same data order. This module is the
plugin (its options, and which run an objective takes); mlx_run.py sets a run up, mlx_steps.py
is its compiled step, preference_run.py the DPO/ORPO run on top of it, autofit.py fits either
to the machine's memory.
The output directory is in mlx-lm's adapter format, so `mlx_lm.generate --adapter-path` reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..components import Trainer, TrainResult
from ..device import clear_cache
from ..hookspecs import hookimpl
from .autofit import train_fitted
from .data import load_training_data
from .mlx_run import MlxRun
from .options import SharedTrainOptions


class MlxTrainer(Trainer):
    name = "mlx"
    description = "LoRA/DoRA/QLoRA/full fine-tuning on MLX (Metal, CUDA or CPU)"
    mlx_distributed = True  # data parallel under mlx.launch (mlx_distributed.py)

    class Options(SharedTrainOptions):
        fine_tune_type: Literal["lora", "dora", "full"] = "lora"
        quantize: Literal[4, 8] | None = Field(
            None, description="quantize the base model on load to 4 or 8 bits (QLoRA)"
        )
        quantize_group_size: Literal[32, 64, 128] = Field(
            64, description="quantization group size: MLX quantizes in groups of 32, 64 or 128"
        )
        learning_rate: float = Field(
            1e-4,
            gt=0,
            le=1.0,
            description="peak rate; above 1.0 one AdamW step moves every weight by more than 1",
        )
        optimizer: Literal["adamw", "adam", "sgd", "adafactor"] = "adamw"
        sample_question: str | None = Field(
            None, description="prompt answered at each evaluation (default: the first valid one)"
        )
        sample_max_tokens: int = Field(48, ge=0, description="0 turns the sample answers off")
        unlikelihood: float = Field(
            0.0,
            ge=0,
            description="weight of an unlikelihood term against repeating earlier tokens of the "
            "answer (Welleck et al. 2019); 0: off. Validation loss stays plain cross-entropy",
        )
        chunked_loss: bool = Field(
            True,
            description="output head and loss over chunks of tokens, so the whole logits never "
            "exist (LoRA/QLoRA: a frozen head); false: in one piece, as mlx-lm",
        )
        auto_fit: bool = Field(
            False,
            description="apply the memory planner's settings when the run would not fit, and "
            "retry smaller after an out-of-memory error",
        )
        preference_beta: float = Field(
            0.1,
            gt=0,
            le=100,
            description="dpo: beta, how far the policy may move from the reference; orpo: "
            "lambda, the weight of the odds-ratio term",
        )
        preference_nll: float = Field(
            0.0,
            ge=0,
            le=100,
            description="dpo: add this x the chosen answers' cross-entropy per token (RPO, Pang "
            "et al. 2024; TRL's rpo_alpha): the chosen answers stay likely while the rejected "
            "ones are pushed down (orpo has this term built in)",
        )
        start_adapter: str | None = Field(
            None,
            description="start from this adapter folder (relative: to the run folder); for dpo "
            "also the frozen reference",
        )

        @model_validator(mode="after")
        def _preference_fits(self) -> MlxTrainer.Options:
            if self.objective != "sft" and self.unlikelihood:
                raise ValueError("unlikelihood applies to objective sft only: set it to 0")
            if self.objective != "sft" and self.packing:
                raise ValueError("packing does not apply to preference pairs: set it to false")
            if self.objective != "dpo" and self.preference_nll:
                raise ValueError("preference_nll applies to objective dpo only: set it to 0")
            if self.objective == "sft" and self.start_adapter is not None:
                raise ValueError("start_adapter applies to objective dpo or orpo")
            return self

    def train(
        self,
        model: str,
        data_dir: Path,
        output_dir: Path,
        *,
        trust_remote_code: bool = False,
        log: Callable[[str], None] = print,
    ) -> TrainResult:
        run_class: type[MlxRun] = MlxRun
        if self.options.objective == "sft":
            train_examples, valid_examples = load_training_data(data_dir, self.options.batch_size)
        else:  # dpo, orpo: preference_run.py
            from .preference_data import load_preference_data
            from .preference_run import PreferenceRun

            train_examples, valid_examples = load_preference_data(  # type: ignore[assignment]
                data_dir, self.options.batch_size
            )
            run_class = PreferenceRun

        def attempt(options: Any) -> TrainResult:
            run = run_class(options, model, data_dir, output_dir, trust_remote_code, log)
            try:
                return run.train(train_examples, valid_examples)
            finally:
                for cleanup in run.cleanups:
                    cleanup()

        return train_fitted(model, self.options, attempt, log, clear=clear_cache)


@hookimpl
def register_trainers(register):
    register(MlxTrainer)
