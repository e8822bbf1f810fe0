"""The built-in trackers: TensorBoard, MLflow and Weights & Biases, each an optional extra
(`pip install 'mlxtune[tensorboard]'`, `[mlflow]`, `[wandb]`). Their libraries are imported
when a run starts, so a missing one is the usual one warning (`mlxtune.track.Tracking`).

Secrets (WANDB_API_KEY, MLflow credentials) come from the environment, as their libraries read
them; mlxtune never logs them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ..components import ComponentOptions, Tracker
from ..hookspecs import hookimpl


def missing(extra: str, package: str) -> ImportError:
    return ImportError(f"{package} is not installed: pip install 'mlxtune[{extra}]'")


class TensorBoardTracker(Tracker):
    name = "tensorboard"
    description = "TensorBoard event files (scalars, samples and the recipe as text)"

    class Options(ComponentOptions):
        log_dir: str | None = Field(
            None, description="folder of the event files; default: RUN_DIR/tensorboard"
        )

    def start(self, run_dir: Path, name: str, config: dict[str, Any]) -> None:
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            raise missing("tensorboard", "tensorboard") from None
        folder = Path(self.options.log_dir) if self.options.log_dir else run_dir / "tensorboard"
        folder.mkdir(parents=True, exist_ok=True)
        self.writer = EventFileWriter(str(folder))
        self.log_text("recipe", "```\n" + json.dumps(config, indent=2) + "\n```", 0)

    def _write(self, summary: Any, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self.writer.add_event(Event(summary=summary, step=step, wall_time=time.time()))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items()]
        self._write(Summary(value=values), step)
        self.writer.flush()

    def log_text(self, key: str, text: str, step: int) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._write(text_pb(key, text), step)
        self.writer.flush()

    def log_artifact(self, path: Path) -> None:
        """TensorBoard keeps no files: a text report is shown as text."""
        if path.suffix in (".md", ".txt"):
            self.log_text(f"artifact/{path.name}", path.read_text(), 0)

    def finish(self) -> None:
        self.writer.close()


class MlflowTracker(Tracker):
    name = "mlflow"
    description = "an MLflow run (metrics, samples and the recipe as artifacts)"

    class Options(ComponentOptions):
        tracking_uri: str | None = Field(
            None, description="default: MLFLOW_TRACKING_URI, else MLflow's own default"
        )
        experiment: str = Field("mlxtune", description="experiment the runs are filed under")

    def start(self, run_dir: Path, name: str, config: dict[str, Any]) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise missing("mlflow", "mlflow") from None
        self.client = MlflowClient(tracking_uri=self.options.tracking_uri)
        found = self.client.get_experiment_by_name(self.options.experiment)
        experiment = (
            found.experiment_id if found else self.client.create_experiment(self.options.experiment)
        )
        self.run_id = self.client.create_run(experiment, run_name=name).info.run_id
        self.client.log_dict(self.run_id, config, "recipe.json")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_text(self, key: str, text: str, step: int) -> None:
        self.client.log_text(self.run_id, text, f"{key}/step_{step:06d}.txt")

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbTracker(Tracker):
    name = "wandb"
    description = "a Weights & Biases run (online, or offline to sync later)"

    class Options(ComponentOptions):
        project: str = "mlxtune"
        entity: str | None = None
        mode: str | None = Field(
            None, description="online, offline or disabled; default: WANDB_MODE, else online"
        )

    def start(self, run_dir: Path, name: str, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError:
            raise missing("wandb", "wandb") from None
        self.wandb = wandb
        self.run = wandb.init(
            project=self.options.project,
            entity=self.options.entity,
            name=name,
            config=config,
            mode=self.options.mode,
            dir=str(run_dir),
            reinit="create_new",
        )

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_text(self, key: str, text: str, step: int) -> None:
        self.run.log({key: text}, step=step)

    def log_artifact(self, path: Path) -> None:
        artifact = self.wandb.Artifact(path.stem.replace(" ", "_"), type="report")
        artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def finish(self) -> None:
        self.run.finish()


@hookimpl
def register_trackers(register) -> None:
    register(TensorBoardTracker)
    register(MlflowTracker)
    register(WandbTracker)
