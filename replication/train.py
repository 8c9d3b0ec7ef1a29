"""Fit-loop helpers shared by every model: seeding, per-epoch history with AUROC, NaN guard,
checkpoint/resume, class-weighted multi-label loss, learning-rate plateau, mixed precision.

The loop runs one Keras epoch at a time so that each epoch's validation accuracy, loss and AUROC
are recorded (the paper's curves are over epochs) and a NaN loss stops with the epoch named. With a
checkpoint directory, weights + optimizer state + history are saved after every epoch and a killed
run continues from its last epoch (`fit_epochs`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
from keras import ops
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from replication.errors import DataError, ParameterError
from replication.io import atomic_path, write_json


class TrainingError(RuntimeError):
    """Training diverged; the message names the model and the epoch, the partial history is kept."""


def seed_everything(seed: int) -> None:
    """Python, NumPy and backend seeds; deterministic TensorFlow kernels on the TensorFlow backend."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present or a score is not finite (undefined, not 0.5)."""
    y_true, score = np.asarray(y_true).ravel(), np.asarray(score, dtype=np.float64).ravel()
    if len(np.unique(y_true)) < 2 or not np.isfinite(score).all():
        return float("nan")
    return float(roc_auc_score(y_true, score))


def evaluate_binary(model: keras.Model, x: Any, y: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """Accuracy at 0.5, AUROC and binary cross-entropy of a one-sigmoid model (x: an array, a list of arrays for a
    multi-input model, or `IndexedImages`)."""
    p = predict_scores(model, x, batch_size).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    eps = 1e-7
    loss = -np.mean(y * np.log(np.clip(p, eps, 1)) + (1 - y) * np.log(np.clip(1 - p, eps, 1)))
    return {"accuracy": float(np.mean((p >= 0.5) == (y == 1))), "auroc": auroc(y, p), "loss": float(loss)}


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
    log: Callable[[str], None] | None = print,
) -> dict[str, list[float]]:
    """Train for `epochs`, recording per epoch: loss, accuracy, val_loss, val_accuracy, val_auroc.

    Without `seed`, Keras shuffles the arrays itself (the text models' behaviour). With `seed`, batches
    come from `Batches` (order and optional left-right flips drawn from seed and epoch, full batches
    only), dropout is re-seeded per epoch, and with `checkpoint_dir` an interrupted fit resumes exactly.
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
                      nan_metrics={"loss": float("nan"), "accuracy": float("nan"), "auroc": float("nan")}, log=log)


# ==================================================================================================
# Shared by the image models: batches with deterministic order and flips, class-weighted BCE, per-class
# AUROC, ReduceLROnPlateau, checkpoint/resume after every epoch, mixed precision, up-to-date stamps.
# ==================================================================================================

class Batches(keras.utils.PyDataset):
    """Batches of x[rows] (x: an array, a memory map, `IndexedImages`, or a list of arrays for a multi-input model) and y[rows].

    The order is a permutation drawn from (seed, epoch) and, with `flip`, a random half of each batch is
    mirrored left-right (axis 2) from (seed, epoch, batch): an epoch's batches depend only on those, so a
    resumed fit sees exactly the batches an uninterrupted one would. `drop_remainder` keeps every training
    batch the same shape (one traced step); for prediction `pad` repeats the last row to fill the last batch.
    """

    def __init__(self, x: Any, y: np.ndarray | None, batch_size: int, seed: int | None = None, epoch: int = 0,
                 flip: bool = False, shuffle: bool = True, drop_remainder: bool = False, pad: bool = False) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ParameterError("batch_size", batch_size, "an integer >= 1")
        n = len(x[0]) if isinstance(x, (list, tuple)) else len(x)
        if n == 0:
            raise DataError("batches", "no examples to batch")
        self.x, self.y, self.flip, self.pad = x, (None if y is None else np.asarray(y)), flip, pad
        self.batch_size = int(batch_size) if pad else min(int(batch_size), n)  # padding fills a whole batch
        self.seed, self.epoch = (0 if seed is None else int(seed)), int(epoch)
        self.order = np.random.default_rng([self.seed, self.epoch, 0]).permutation(n) if shuffle else np.arange(n)
        self.n_batches = n // self.batch_size if drop_remainder else -(-n // self.batch_size)

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, i: int) -> Any:
        rows = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        if self.pad and len(rows) < self.batch_size:
            rows = np.concatenate([rows, np.repeat(rows[-1:], self.batch_size - len(rows))])
        if isinstance(self.x, (list, tuple)):  # a multi-input model: the same rows of every input (no flips)
            x = tuple(np.asarray(a[rows]) for a in self.x)
            return (x,) if self.y is None else (x, self.y[rows])
        x = np.asarray(self.x[rows])
        if self.flip:
            mirror = np.random.default_rng([self.seed, self.epoch, 1, i]).random(len(rows)) < 0.5
            x = x.copy()
            x[mirror] = x[mirror][:, :, ::-1]
        return (x,) if self.y is None else (x, self.y[rows])


class IndexedImages:
    """A cohort's images seen through an index (cases -> image_index) without copying them: x[rows] ->
    float32 (len(rows), size, size, 1) pixel values 0..255."""

    add_channel = False

    def __init__(self, images: np.ndarray, index: np.ndarray) -> None:
        self.images, self.index = images, np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index),) + tuple(images.shape[1:]) + (1,)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: Any) -> np.ndarray:
        idx = self.index[rows]
        order = np.argsort(idx, kind="stable")
        out = np.empty((len(idx),) + tuple(self.images.shape[1:]) + (1,), np.float32)
        out[order, ..., 0] = self.images[idx[order]]
        return out


def predict_scores(model: keras.Model, x: Any, batch_size: int = 64) -> np.ndarray:
    """model.predict over an array, a list of arrays (one per input) or `IndexedImages`, always in batches of
    `batch_size` (the last one padded with its last row, the padding dropped): one batch shape per model, so
    the predict step is traced once rather than once per part size (a DenseNet-121 retrace costs seconds)."""
    n = len(x[0]) if isinstance(x, (list, tuple)) else len(x)
    if n == 0:
        return np.zeros((0,) + tuple(model.outputs[0].shape[1:]), np.float64)
    batches = Batches(x, None, batch_size, shuffle=False, pad=True)
    return np.asarray(model.predict(batches, verbose=0), dtype=np.float64)[:n]


# ----------------------------------------------------------------------------------- multi-label loss
def class_balance_weights(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CheXNet's per-class weights from the training labels: w+ = |N|/(|P|+|N|), w- = |P|/(|P|+|N|).

    A class with no positive (or no negative) example gets w+ = 1, w- = 0 (or the reverse): its loss
    term then vanishes on the side that never occurs.
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2 or len(y) == 0:
        raise DataError("labels", f"expected a non-empty (n, classes) 0/1 array, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise DataError("labels", "multi-label targets must be 0/1")
    pos = y.mean(axis=0)
    return (1.0 - pos).astype(np.float32), pos.astype(np.float32)


@keras.saving.register_keras_serializable(package="replication")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Mean over classes of -(w+_c y log p + w-_c (1 - y) log(1 - p)) on sigmoid outputs (CheXNet, Rajpurkar 2017)."""

    def __init__(self, positive_weights: Sequence[float], negative_weights: Sequence[float], epsilon: float = 1e-7,
                 name: str = "weighted_binary_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]
        self.negative_weights = [float(w) for w in negative_weights]
        if len(self.positive_weights) != len(self.negative_weights):
            raise ParameterError("negative_weights", len(self.negative_weights), f"{len(self.positive_weights)} weights, one per class")
        self.epsilon = float(epsilon)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.clip(ops.cast(y_pred, "float32"), self.epsilon, 1.0 - self.epsilon)
        y_true = ops.cast(y_true, "float32")
        wp = ops.convert_to_tensor(np.asarray(self.positive_weights, np.float32))
        wn = ops.convert_to_tensor(np.asarray(self.negative_weights, np.float32))
        terms = -(wp * y_true * ops.log(y_pred) + wn * (1.0 - y_true) * ops.log(1.0 - y_pred))
        return ops.mean(terms, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "positive_weights": self.positive_weights,
                "negative_weights": self.negative_weights, "epsilon": self.epsilon}


def weighted_bce_numpy(y: np.ndarray, p: np.ndarray, positive_weights: np.ndarray, negative_weights: np.ndarray,
                       epsilon: float = 1e-7) -> float:
    """The same loss in NumPy (validation loss, tests)."""
    p = np.clip(np.asarray(p, np.float64), epsilon, 1 - epsilon)
    y = np.asarray(y, np.float64)
    terms = -(np.asarray(positive_weights) * y * np.log(p) + np.asarray(negative_weights) * (1 - y) * np.log(1 - p))
    return float(terms.mean())


def evaluate_multilabel(
    model: keras.Model, x: Any, y: np.ndarray, label_names: Sequence[str],
    positive_weights: np.ndarray | None = None, negative_weights: np.ndarray | None = None, batch_size: int = 64,
) -> dict[str, Any]:
    """Per-class AUROC (NaN where a class has one value only), their mean over defined classes, weighted loss."""
    p = predict_scores(model, x, batch_size)
    y = np.asarray(y, np.float64)
    k = y.shape[1]
    wp = np.ones(k) if positive_weights is None else positive_weights
    wn = np.ones(k) if negative_weights is None else negative_weights
    per_class = {name: auroc(y[:, c], p[:, c]) for c, name in enumerate(label_names)}
    defined = [v for v in per_class.values() if math.isfinite(v)]
    return {"loss": weighted_bce_numpy(y, p, wp, wn) if np.isfinite(p).all() else float("nan"),
            "mean_auroc": float(np.mean(defined)) if defined else float("nan"),
            "classes_scored": len(defined), "auroc": per_class}


# --------------------------------------------------------------------------------------- the loop
@dataclass
class Plateau:
    """ReduceLROnPlateau kept in the checkpoint: multiply the rate by `factor` after `patience` epochs
    without a `min_delta` improvement of the monitored value (CheXNet: /10 when the validation loss stalls)."""

    factor: float = 0.1
    patience: int = 1
    min_learning_rate: float = 0.0
    min_delta: float = 1e-4
    monitor: str = "val_loss"
    best: float = float("inf")
    wait: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.factor < 1:
            raise ParameterError("plateau.factor", self.factor, "a number in (0, 1)")
        if isinstance(self.patience, bool) or int(self.patience) < 0:
            raise ParameterError("plateau.patience", self.patience, "an integer >= 0")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> "Plateau | None":
        if not params:
            return None
        known = {"factor", "patience", "min_learning_rate", "min_delta", "monitor"}
        unknown = set(params) - known
        if unknown:
            raise ParameterError("plateau", sorted(unknown), f"keys from {sorted(known)}")
        return cls(**{k: params[k] for k in known if k in params})

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


def fingerprint(*parts: Any) -> str:
    """SHA-256 of the JSON of `parts`: what a checkpoint or an output was made from."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cohort_fingerprint(path: str | os.PathLike) -> str:
    """The prepared cohort's identity: the file hashes its manifest records."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        raise DataError(path, "not a cohort directory (no manifest.json); run the prepare stage")
    return fingerprint(json.loads(manifest.read_text()).get("files", {}))


def code_fingerprint(modules: Sequence[str] = ("replication.train", "replication.models.densenet", "replication.image_experiment")) -> str:
    """SHA-256 over the source of the modules that make the image results: changed code invalidates stamps and checkpoints."""
    import importlib.util

    digests = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        digests.append(hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest() if spec and spec.origin else name)
    return fingerprint(digests)


def up_to_date(stamp: str | os.PathLike, print_as: str, wanted: str, outputs: Sequence[str | os.PathLike]) -> bool:
    """True (and says so) when `stamp` holds `wanted` and every output exists: the stage has nothing to do."""
    stamp = Path(stamp)
    if not stamp.is_file() or not all(Path(o).exists() for o in outputs):
        return False
    try:
        done = json.loads(stamp.read_text()).get("fingerprint")
    except json.JSONDecodeError:
        return False
    if done == wanted:
        print(f"{print_as}: outputs are up to date (fingerprint {wanted[:12]} in {stamp}); nothing to do")
        return True
    return False


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


CHECKPOINT_WEIGHTS = "model.weights.h5"
CHECKPOINT_OPTIMIZER = "optimizer.npz"
CHECKPOINT_STATE = "state.json"
CHECKPOINT_BEST = "best.npz"


def save_model_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """The model's weights only (Keras' `save_weights` also stores the optimizer's slots, 3x the size for Adam);
    they load into a model of the same structure with `load_weights`."""
    _bare(model).save_weights(str(path))


def load_model_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Counterpart of `save_model_weights` (the optimizer state is left alone)."""
    _bare(model).load_weights(str(path))


def _bare(model: keras.Model) -> keras.Model:
    return keras.Model(model.inputs, model.outputs, name=model.name)


def save_checkpoint(model: keras.Model, directory: str | os.PathLike, state: Mapping[str, Any], weights: bool = True,
                    best: Sequence[np.ndarray] | None = None) -> None:
    """Model weights + optimizer variables + `state` (history, plateau, key) [+ the best weights so far], replaced atomically."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        if best is not None:
            np.savez(tmp / CHECKPOINT_BEST, **{f"w{i}": w for i, w in enumerate(best)})
        if weights:
            save_model_weights(model, tmp / CHECKPOINT_WEIGHTS)
            opt = model.optimizer
            arrays = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(opt.variables)} if getattr(opt, "built", False) else {}
            np.savez(tmp / CHECKPOINT_OPTIMIZER, names=np.array([v.path for v in opt.variables] if arrays else [], dtype=str), **arrays)
        (tmp / CHECKPOINT_STATE).write_text(json.dumps(state, indent=1, default=_plain_json) + "\n")


def read_checkpoint_state(directory: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(directory) / CHECKPOINT_STATE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"checkpoint state is not valid JSON ({e}); delete {directory} to start afresh") from None


def restore_checkpoint(model: keras.Model, directory: str | os.PathLike) -> None:
    """Weights and optimizer state back into `model` (its optimizer is built first when needed)."""
    directory = Path(directory)
    try:
        load_model_weights(model, directory / CHECKPOINT_WEIGHTS)
    except (ValueError, OSError, KeyError) as e:
        raise DataError(directory / CHECKPOINT_WEIGHTS, f"checkpoint does not fit this model ({type(e).__name__}: "
                                                        f"{str(e).splitlines()[0] if str(e) else ''}); delete {directory}") from None
    opt = model.optimizer
    with np.load(directory / CHECKPOINT_OPTIMIZER) as saved:
        n = len(saved["names"])
        if n == 0:
            return
        if not getattr(opt, "built", False):
            opt.build(model.trainable_variables)
        if len(opt.variables) != n:
            raise DataError(directory / CHECKPOINT_OPTIMIZER, f"{n} optimizer variables saved, the optimizer has {len(opt.variables)}; delete {directory}")
        for i, v in enumerate(opt.variables):
            value = saved[f"v{i}"]
            if tuple(value.shape) != tuple(v.shape):
                raise DataError(directory / CHECKPOINT_OPTIMIZER, f"optimizer variable {v.path} has shape {value.shape}, expected {tuple(v.shape)}")
            v.assign(value)


def _plain_json(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


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


def finish_checkpoint(directory: str | os.PathLike, result: Mapping[str, Any], keep_weights: bool = False) -> None:
    """Mark a run finished with its final `result` (read back by `finished_result`); drop the weights unless kept."""
    state = read_checkpoint_state(directory) or {}
    state.update({"completed": True, "result": dict(result)})
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / CHECKPOINT_STATE) as tmp:
        tmp.write_text(json.dumps(state, indent=1, default=_plain_json) + "\n")
    if not keep_weights:
        for name in (CHECKPOINT_WEIGHTS, CHECKPOINT_OPTIMIZER, CHECKPOINT_BEST):
            (path / name).unlink(missing_ok=True)


def finished_result(directory: str | os.PathLike, checkpoint_key: str) -> tuple[dict[str, list[Any]], dict[str, Any]] | None:
    """(history, result) of a run finished earlier under the same key, or None."""
    state = read_checkpoint_state(directory)
    if state is None or state.get("key") != checkpoint_key or not state.get("completed"):
        return None
    return state["history"], state["result"]


# ------------------------------------------------------------------------------------ precision
def configure_precision(mixed_precision: bool) -> str:
    """mixed_float16 on a GPU when asked; on a CPU the request is ignored and the returned note says so."""
    if not mixed_precision:
        keras.config.set_dtype_policy("float32")
        return "float32"
    if _gpu_available():
        keras.config.set_dtype_policy("mixed_float16")
        return "mixed_float16 (GPU)"
    keras.config.set_dtype_policy("float32")
    return "float32: mixed precision was asked for but no GPU is visible, so it is ignored (it would be slower on a CPU)"


def _gpu_available() -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False
