"""The torch side of mlxtune's shared training loop (`mlxtune.train.loop.TrainingBackend`).

Under `accelerate launch` / `torchrun` each of the N processes computes the loss of every N-th row
of each batch, scaled so that DistributedDataParallel's gradient average is exactly the one-device
gradient of the whole batch: the same recipe gives the same run on one GPU or several (and the
same data order). Gradients are averaged over the processes once per optimizer update, not per
micro-batch (`no_sync`).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlxtune.api import Row, TrainingBackend, batch_arrays


class TorchSteps(TrainingBackend):
    def __init__(
        self,
        accelerator: Any,
        net: Any,
        optimizer: Any,
        options: Any,
        valid_rows: list[Row],
        output_dir: Path,
        dtype: Any,
    ):
        self.accelerator, self.net, self.optimizer, self.options = (
            accelerator,
            net,
            optimizer,
            options,
        )
        self.model = accelerator.unwrap_model(net)  # evaluation and saving bypass the DDP wrapper
        self.valid_rows, self.out, self.dtype = valid_rows, output_dir, dtype
        self.device = accelerator.device
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.main = accelerator.is_main_process
        self.on_finish: Callable[[], None] = lambda: None
        net.train()

    def summed_loss(self, module: Any, tokens: Any, mask: Any) -> Any:
        import torch

        t = torch.from_numpy(tokens).long().to(self.device)
        w = torch.from_numpy(mask).to(self.device)
        logits = module(input_ids=t[:, :-1]).logits.float()
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), reduction="none"
        ).reshape(w.shape)
        return (ce * w).sum()

    # ------------------------------------------------------------ TrainingBackend

    def start_step(self, step: int, learning_rate: float) -> None:
        import torch

        torch.manual_seed(self.options.seed * 1_000_003 + step)  # dropout repeats on resume
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.optimizer.zero_grad(set_to_none=True)

    def micro_batch(self, rows: list[Row], last: bool) -> float:
        """This process's share of the batch's mean loss, times the process count."""
        tokens, mask = batch_arrays(rows, max_width=self.options.max_seq_length)
        world, rank = self.world, self.rank
        syncing = contextlib.nullcontext() if last else self.accelerator.no_sync(self.net)
        with syncing:
            loss = self.summed_loss(self.net, tokens[rank::world], mask[rank::world])
            loss = loss * (world / float(mask.sum()))
            (loss / self.options.grad_accumulation_steps).backward()
        if last:
            self.optimizer.step()
        return self.accelerator.reduce(loss.detach(), "mean").item()

    def evaluate(self) -> float:
        """Whole batches split over the processes, sums reduced: the one-process number."""
        import torch

        o, model = self.options, self.model
        model.eval()
        ordered = sorted(self.valid_rows, key=len)
        batches = [ordered[i : i + o.batch_size] for i in range(0, len(ordered), o.batch_size)]
        if o.val_batches > 0:
            batches = batches[: o.val_batches]
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for batch in batches[self.rank :: self.world]:
                tokens, mask = batch_arrays(batch, max_width=o.max_seq_length)
                sums[0] += self.summed_loss(model, tokens, mask).double()
                sums[1] += float(mask.sum())
        model.train()
        sums = self.accelerator.reduce(sums, "sum")
        return (sums[0] / sums[1]).item()

    def save_adapter(self) -> None:
        """The kept adapter in PEFT's format (`finish` converts it to mlx-lm's)."""
        self.model.save_pretrained(str(self.out / "peft.partial"))
        shutil.rmtree(self.out / "peft", ignore_errors=True)
        (self.out / "peft.partial").rename(self.out / "peft")

    def save_checkpoint(self, directory: Path) -> tuple[list[str], dict[str, Any]]:
        from safetensors.torch import save_file

        save_file(trainable(self.model), str(directory / "last.safetensors"))
        tensors, meta = flatten_optimizer(self.optimizer.state_dict())
        save_file(tensors, str(directory / "optimizer.safetensors"))
        return ["last.safetensors", "optimizer.safetensors"], {"optimizer": meta}

    def load_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        from safetensors.torch import load_file

        set_trainable(self.model, load_file(str(directory / "last.safetensors")))
        tensors = load_file(str(directory / "optimizer.safetensors"))
        self.optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def finish(self, checkpoint_dir: Path) -> None:
        self.on_finish()

    def summary(self) -> dict[str, Any]:
        return {"device": self.device.type, "processes": self.world}

    def describe(self) -> str:
        processes = f" x {self.world} processes" if self.world > 1 else ""
        return f" on {self.device.type}{processes} ({self.dtype})"


def trainable(net: Any) -> dict[str, Any]:
    return {
        n: p.detach().float().cpu().contiguous()
        for n, p in net.named_parameters()
        if p.requires_grad
    }


def set_trainable(net: Any, tensors: dict[str, Any]) -> None:
    params = dict(net.named_parameters())
    for name, value in tensors.items():
        params[name].data.copy_(value.to(params[name].device, params[name].dtype))


def flatten_optimizer(state_dict: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """torch optimizer state as safetensors tensors + JSON (instead of torch.save's pickle)."""
    import torch

    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, Any], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}
