"""Checkpoint/resume after every epoch: weights, optimizer state and loop state, replaced atomically, under a key
made from the run's inputs (a checkpoint of other inputs is discarded, not resumed)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from replication.errors import DataError
from replication.io import atomic_path

CHECKPOINT_WEIGHTS = "model.weights.h5"
CHECKPOINT_OPTIMIZER = "optimizer.npz"
CHECKPOINT_STATE = "state.json"
CHECKPOINT_BEST = "best.npz"


def checkpoint_key(*parts: Any) -> str:
    """SHA-256 of the JSON of `parts` (parameters, input digests, labels): what a checkpoint was made from."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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


def finished_result(directory: str | os.PathLike, key: str) -> tuple[dict[str, list[Any]], dict[str, Any]] | None:
    """(history, result) of a run finished earlier under the same key, or None."""
    state = read_checkpoint_state(directory)
    if state is None or state.get("key") != key or not state.get("completed"):
        return None
    return state["history"], state["result"]


def _plain_json(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
