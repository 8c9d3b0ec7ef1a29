"""Batches with a deterministic order and flips (a resumed fit sees the batches an uninterrupted one would),
lazy image views, and prediction in fixed-shape batches."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from replication.errors import DataError, ParameterError


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
