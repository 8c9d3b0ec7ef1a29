"""The epoch loop every model shares: one Keras epoch at a time, so each epoch's validation accuracy, loss and
AUROC are recorded (the paper's curves are over epochs); a NaN loss stops with the epoch named; with a checkpoint
directory a killed run continues from its last epoch. The plateau schedule and the learning-rate helpers live here.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import keras
import numpy as np
from tqdm.auto import tqdm

from replication.errors import ParameterError
from replication.io import write_json
from replication.training.batches import Batches
from replication.training.checkpoint import (CHECKPOINT_BEST, CHECKPOINT_WEIGHTS, read_checkpoint_state, restore_checkpoint,
                                             save_checkpoint)
from replication.training.metrics import evaluate_binary

if TYPE_CHECKING:
    from replication.params import PlateauParams


class TrainingError(RuntimeError):
    """Training diverged; the message names the model and the epoch, the partial history is kept."""


@dataclass
class Plateau:
    """ReduceLROnPlateau kept in the checkpoint: multiply the rate by `factor` after `patience` epochs
    without a `min_delta` improvement of the monitored value (CheXNet: /10 when the validation loss stalls)."""

    factor: float
    patience: int
    min_learning_rate: float
    min_delta: float = 1e-4          # Keras' ReduceLROnPlateau's
    monitor: str = "val_loss"        # CheXNet's
    best: float = float("inf")
    wait: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.factor < 1:
            raise ParameterError("plateau.factor", self.factor, "a number in (0, 1)")
        if isinstance(self.patience, bool) or int(self.patience) < 0:
            raise ParameterError("plateau.patience", self.patience, "an integer >= 0")

    @classmethod
    def from_params(cls, section: PlateauParams) -> "Plateau":
        return cls(factor=section.factor, patience=section.patience, min_learning_rate=section.min_learning_rate)

    def step(self, value: float, learning_rate: float) -> float:
        """The learning rate for the next epoch, given this epoch's monitored value (as Keras' ReduceLROnPlateau)."""
        if math.isfinite(value) and value < self.best - self.min_delta:
            self.best, self.wait = float(value), 0
            return learning_rate
        self.wait += 1
        if self.wait >= max(int(self.patience), 1):
            self.wait = 0
            return max(learning_rate * self.factor, self.min_learning_rate)
        return learning_rate


def set_learning_rate(model: keras.Model, value: float) -> None:
    model.optimizer.learning_rate = float(value)


def get_learning_rate(model: keras.Model) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))


def reset_optimizer(model: keras.Model, learning_rate: float) -> None:
    """Back to a fresh optimizer (zero moments, step 0) without re-tracing the train step: a model reused across runs."""
    opt = model.optimizer
    if getattr(opt, "built", False):
        for v in opt.variables:
            v.assign(np.zeros(v.shape, dtype=keras.backend.standardize_dtype(v.dtype)))
    set_learning_rate(model, learning_rate)


def reseed_dropout(model: keras.Model, seed: int, epoch: int) -> None:
    """Every random layer's seed state from (seed, epoch, its position): an epoch's dropout masks do not
    depend on what ran before in the process, so a resumed fit draws the masks an uninterrupted one does."""
    weights = {id(w) for w in model.weights}
    states = [v for v in model.variables if id(v) not in weights and "seed_generator" in v.path]
    for k, state in enumerate(states):
        dtype = keras.backend.standardize_dtype(state.dtype)
        state.assign(np.array([(seed * 1009 + k) % (2**31 - 1), epoch * 100003 % (2**31 - 1)], dtype=dtype))


def build_training_state(model: keras.Model, fit_args: Mapping[str, Any]) -> None:
    """Create the optimizer's and the compiled metrics' variables eagerly, before the first `fit`.

    Without a distribution strategy Keras' TensorFlow trainer defers them to the first trace of the train step;
    a tf.function that creates variables is traced twice, which for DenseNet-121 costs ~20 s of a ~60 s first
    epoch on 2 CPU cores. Keras has no public call for this, so this uses `Trainer._symbolic_build` (what its
    own fit does under a strategy) and does nothing where that method is absent or everything is built.
    """
    build = getattr(model, "_symbolic_build", None)
    if build is None or getattr(model, "optimizer", None) is None or model.optimizer.built:
        return
    x, y = fit_args.get("x"), fit_args.get("y")
    if isinstance(x, keras.utils.PyDataset):
        x, y = x[0][:2] if len(x[0]) > 1 else (x[0][0], None)
    else:
        n = int(fit_args.get("batch_size") or 32)
        x = [np.asarray(a[:n]) for a in x] if isinstance(x, (list, tuple)) else np.asarray(x[:n])
        y = None if y is None else np.asarray(y[:n])
    build(data_batch=(tuple(x) if isinstance(x, list) else x, y))


def fit_epochs(
    model: keras.Model,
    train_data: Callable[[int], Mapping[str, Any]],
    evaluate: Callable[[keras.Model], Mapping[str, Any]],
    epochs: int,
    name: str,
    history_path: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_key: str = "",
    seed: int | None = None,
    plateau: Plateau | None = None,
    train_metrics: Sequence[str] = ("loss",),
    nan_metrics: Mapping[str, Any] | None = None,
    keep_best: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, list[Any]]:
    """The epoch loop every model shares.

    `train_data(epoch)` gives model.fit's data arguments for that epoch; `evaluate(model)` the validation
    metrics: a number becomes `val_<key>`, a mapping (e.g. per-class AUROC) `val_<key>_<name>`. After each
    epoch the history goes to `history_path` (JSON) and, with `checkpoint_dir`, the model weights, the
    optimizer state, the history and the plateau state are saved there (atomically); a later call with the
    same `checkpoint_key` restores them and continues after the last saved epoch (another key: the stale
    checkpoint is discarded). With `seed`, dropout is re-seeded per epoch (`reseed_dropout`). A NaN training
    loss raises TrainingError naming the model and the epoch (`nan_metrics` fill that epoch's validation row).
    `keep_best="val_loss"` ends with the weights of the epoch where that value was lowest (CheXNet picks the
    model with the lowest validation loss); the best weights are checkpointed too.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ParameterError("epochs", epochs, "an integer >= 1")
    history: dict[str, list[Any]] = {"epoch": []}
    start = 0
    best: tuple[float, list[np.ndarray] | None] = (float("inf"), None)
    if checkpoint_dir is not None:
        state = read_checkpoint_state(checkpoint_dir)
        usable = (state is not None and state.get("key") == checkpoint_key and int(state.get("epochs_done", 0)) > 0
                  and (Path(checkpoint_dir) / CHECKPOINT_WEIGHTS).is_file())
        if usable:
            restore_checkpoint(model, checkpoint_dir)
            history = state["history"]
            if keep_best and (Path(checkpoint_dir) / CHECKPOINT_BEST).is_file():
                with np.load(Path(checkpoint_dir) / CHECKPOINT_BEST) as saved:
                    best = (float(state.get("best", float("inf"))), [saved[f"w{i}"] for i in range(len(saved.files))])
            if plateau is not None and state.get("plateau"):
                for key, value in state["plateau"].items():
                    setattr(plateau, key, value)
            if state.get("learning_rate") is not None:
                set_learning_rate(model, state["learning_rate"])
            start = min(int(state["epochs_done"]), epochs)
            if log:
                log(f"{name}: resuming after epoch {start} from the checkpoint in {checkpoint_dir}")
        elif state is not None:
            if log:
                log(f"{name}: the checkpoint in {checkpoint_dir} was made from other inputs or parameters; starting afresh")
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    build_training_state(model, train_data(start))
    for epoch in tqdm(range(start, epochs), desc=name, unit="epoch", disable=None, leave=False):
        if seed is not None:
            reseed_dropout(model, seed, epoch)
        lr_used = get_learning_rate(model) if plateau is not None else None
        fit_args = dict(train_data(epoch))
        if isinstance(fit_args.get("x"), keras.utils.PyDataset):
            fit_args.setdefault("shuffle", False)  # Keras would reorder the batches from the global RNG; `Batches` already shuffles
        logs = model.fit(**fit_args, epochs=epoch + 1, initial_epoch=epoch, verbose=0).history
        loss = float(logs["loss"][-1])
        diverged = not math.isfinite(loss)
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({key: float(logs[key][-1]) if key in logs else float("nan") for key in train_metrics})
        for key, value in (dict(nan_metrics or {}) if diverged else dict(evaluate(model))).items():
            if isinstance(value, Mapping):
                row.update({f"val_{key}_{k}": float(v) for k, v in value.items()})
            else:
                row[f"val_{key}"] = float(value)
        if lr_used is not None:
            row["learning_rate"] = lr_used
        done = len(history["epoch"])
        for key in list(history) + [k for k in row if k not in history]:
            history.setdefault(key, [float("nan")] * done).append(row.get(key, float("nan")))
        if keep_best and math.isfinite(row.get(keep_best, float("nan"))) and row[keep_best] < best[0]:
            best = (float(row[keep_best]), [np.array(w) for w in model.get_weights()])
        if plateau is not None and not diverged:
            set_learning_rate(model, plateau.step(row.get(plateau.monitor, float("nan")), get_learning_rate(model)))
        if history_path is not None:
            write_json(history_path, history)
        if diverged:
            raise TrainingError(f"{name}: the training loss is {loss} at epoch {epoch + 1}; "
                                f"the history up to that epoch is kept{f' in {history_path}' if history_path else ''}")
        if checkpoint_dir is not None:
            save_checkpoint(model, checkpoint_dir, {
                "key": checkpoint_key, "name": name, "epochs_done": epoch + 1, "epochs": epochs, "history": history,
                "plateau": None if plateau is None else asdict(plateau),
                "learning_rate": get_learning_rate(model) if plateau is not None else None,
                "best": best[0] if keep_best else None,
            }, best=best[1] if keep_best else None)
    if keep_best and best[1] is not None:
        model.set_weights(best[1])
        if log:
            log(f"{name}: keeping the weights of the epoch with the lowest {keep_best} ({best[0]:.4f})")
    return history


def fit_binary(
    model: keras.Model,
    train: tuple[Any, np.ndarray],
    val: tuple[Any, np.ndarray],
    epochs: int,
    batch_size: int,
    name: str,
    history_path: str | os.PathLike | None = None,
    *,
    seed: int | None = None,
    flip: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_key: str = "",
    keep_best: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, list[float]]:
    """Train for `epochs`, recording per epoch: loss, accuracy, val_loss, val_accuracy, val_auroc.

    Without `seed`, Keras shuffles the arrays itself (the text models' behaviour). With `seed`, batches
    come from `Batches` (order and optional left-right flips drawn from seed and epoch, full batches
    only), dropout is re-seeded per epoch, and with `checkpoint_dir` an interrupted fit resumes exactly.
    `keep_best="val_loss"` ends with the weights of the lowest-validation-loss epoch (`fit_epochs`).
    `train[0]`/`val[0]` may be arrays or `IndexedImages`.
    """
    if seed is None and flip:
        raise ParameterError("flip", flip, "a seed as well (flips are drawn from it)")
    if seed is None and not isinstance(train[0], (np.ndarray, list, tuple)):  # arrays (or a list of them): Keras shuffles
        seed = 0

    def data(epoch: int) -> dict[str, Any]:
        if seed is None:
            return {"x": train[0], "y": train[1], "batch_size": batch_size, "shuffle": True}
        return {"x": Batches(train[0], train[1], batch_size, seed=seed, epoch=epoch, flip=flip, drop_remainder=True)}

    def evaluate(m: keras.Model) -> dict[str, float]:
        metrics = evaluate_binary(m, val[0], val[1], batch_size=max(batch_size, 64))
        return {"loss": metrics["loss"], "accuracy": metrics["accuracy"], "auroc": metrics["auroc"]}

    return fit_epochs(model, data, evaluate, epochs, name, history_path=history_path, checkpoint_dir=checkpoint_dir,
                      checkpoint_key=checkpoint_key, seed=seed, train_metrics=("loss", "accuracy"),
                      nan_metrics={"loss": float("nan"), "accuracy": float("nan"), "auroc": float("nan")}, keep_best=keep_best, log=log)
