"""What an explanation has to beat, and whether it explains the model at all.

Trivial maps, scored by exactly the same methods as the attributions (``replication.explain.scoring``):

- a random map (uniform noise, one per image): its hottest pixel is a random pixel, its top-k a random pixel set
  of the same area; the chance level of every column;
- a centre prior (a Gaussian at the image centre): its hottest pixel is the centre, its threshold a centred disc;
- the image intensity: its hottest pixel is the brightest pixel (burned-in markers are the brightest pixels, and
  integrated gradients multiply by the input).

SmoothGrad (Smilkov et al. 2017) is the noise-averaged gradient, the standard comparator beside plain gradients.

Sanity checks (Adebayo et al. 2018, cascading randomisation): the model's weights are randomised block by block
from the output down, and the attribution of each randomised model is compared with the trained model's (Spearman
rank correlation of |attribution|). An explanation that does not change when the weights it should depend on are
destroyed is not explaining the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import spearmanr

from replication.errors import ParameterError

CENTRE_SIGMA = 0.25  # the centre prior's standard deviation, as a fraction of the image side


def random_maps(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """(n, H, W) uniform noise from `seed`: the chance level of every localisation score."""
    return np.random.default_rng(seed).random(shape)


def centre_maps(shape: tuple[int, ...]) -> np.ndarray:
    """(n, H, W) Gaussian bump at the image centre (sigma = CENTRE_SIGMA x side); its hottest pixel is the centre."""
    n, height, width = shape
    rows = (np.arange(height) - (height - 1) / 2) / (CENTRE_SIGMA * height)
    cols = (np.arange(width) - (width - 1) / 2) / (CENTRE_SIGMA * width)
    bump = np.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2))
    return np.broadcast_to(bump, (n, height, width)).copy()


def intensity_maps(images: np.ndarray) -> np.ndarray:
    """(n, H, W) the images themselves: the brightest pixel, the brightest area."""
    x = np.asarray(images, dtype=np.float64)
    return x[..., 0] if x.ndim == 4 else x


def baseline_maps(images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The trivial maps of this module's docstring for (n, H, W[, 1]) images, keyed by their names in the tables."""
    x = intensity_maps(images)
    return {"random map (chance)": random_maps(x.shape, seed), "centre prior": centre_maps(x.shape), "image intensity": x}


def smoothgrad(gradient_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, *, samples: int = 16, noise: float = 0.15,
               seed: int = 0) -> np.ndarray:
    """SmoothGrad: the mean of `gradient_fn` over `samples` copies of each image with Gaussian noise of standard deviation
    `noise` x (max - min) of that image. `gradient_fn`: (m, H, W, C) -> (m, H, W, C); all copies go in one call."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ParameterError("samples", samples, "an integer >= 1")
    if not noise >= 0:
        raise ParameterError("noise", noise, "a number >= 0")
    x = np.asarray(images, dtype=np.float32)
    span = (x.reshape(len(x), -1).max(axis=1) - x.reshape(len(x), -1).min(axis=1)).reshape((-1,) + (1,) * (x.ndim - 1))
    rng = np.random.default_rng(seed)
    noisy = x[:, None] + rng.standard_normal((len(x), samples) + x.shape[1:]).astype(np.float32) * (noise * span)[:, None]
    grads = np.asarray(gradient_fn(noisy.reshape((-1,) + x.shape[1:])), dtype=np.float64)
    return grads.reshape((len(x), samples) + x.shape[1:]).mean(axis=1)


# ----------------------------------------------------------------------------------------- cascading randomisation
@dataclass(frozen=True)
class Stage:
    """One step of the cascade: its name and the layers randomised so far (cumulative, from the output down)."""

    name: str
    layers: tuple[str, ...]


def _weighted_layers(model: Any) -> list[Any]:
    """Every layer with weights, nested models flattened, in the model's order (input to output)."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_weighted_layers(layer))
        elif layer.weights:
            out.append(layer)
    return out


def cascade(model: Any, blocks: Sequence[tuple[str, Callable[[str], bool]]]) -> list[Stage]:
    """The cascade's stages: `blocks` = (name, does this layer name belong to the block), from the output down;
    each stage randomises its block and every block before it. Layers no block claims belong to the last."""
    layers = [layer.name for layer in _weighted_layers(model)]
    if not blocks:
        raise ParameterError("blocks", blocks, "at least one (name, predicate) block")
    claimed: set[str] = set()
    stages, so_far = [], []
    for k, (name, belongs) in enumerate(blocks):
        mine = [n for n in layers if n not in claimed and (belongs(n) or k == len(blocks) - 1)]
        claimed.update(mine)
        so_far += mine
        stages.append(Stage(name, tuple(so_far)))
    return stages


def densenet_blocks() -> list[tuple[str, Callable[[str], bool]]]:
    """The fine-tuned DenseNet's cascade from the output down: the head, then dense blocks 4, 3, 2 and the stem."""
    def head(n: str) -> bool:
        return not n.startswith(("conv", "bn", "pool", "relu", "zero_padding"))

    return [("head", head), ("dense block 4", lambda n: n.startswith("conv5") or n == "bn"),
            ("dense block 3", lambda n: n.startswith(("conv4", "pool4"))),
            ("dense block 2", lambda n: n.startswith(("conv3", "pool3"))),
            ("dense block 1 and stem (all weights)", lambda n: True)]


def randomise(model: Any, layer_names: Sequence[str], seed: int) -> None:
    """In place: every weight tensor of the named layers replaced by a random permutation of its own values (the
    distribution of each tensor is kept, what training arranged is gone; Adebayo et al. re-draw from the initialiser)."""
    rng = np.random.default_rng(seed)
    wanted = set(layer_names)
    for layer in _weighted_layers(model):
        if layer.name in wanted:
            layer.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in layer.get_weights()])


def rank_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image: Spearman correlation of |a| and |b| over pixels (n,); NaN where either map is constant."""
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    if a.shape != b.shape or a.ndim < 2:
        raise ParameterError("maps", (a.shape, b.shape), "two (n, ...) stacks of the same shape")
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0:
            out[i] = spearmanr(a[i].ravel(), b[i].ravel()).statistic
    return out


__all__ = ["CENTRE_SIGMA", "Stage", "baseline_maps", "cascade", "centre_maps", "densenet_blocks", "intensity_maps",
           "random_maps", "randomise", "rank_similarity", "smoothgrad"]
