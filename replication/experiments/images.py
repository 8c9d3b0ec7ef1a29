"""What the image experiments (ChestX-ray14 pretraining, Fig. 4 transfer) share: a cohort's imaged cases as
lazy per-part arrays, and the ImageNet initialisation with its documented offline fallback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from replication.data.store import Cohort
from replication.errors import DataError

PARTS = ("train", "val", "test")
Log = Callable[[str], None]


@dataclass
class ImageSplit:
    """One split of a cohort's imaged cases: per part the images (lazy, `IndexedImages`), targets and case ids."""

    column: str
    x: dict[str, Any]
    y: dict[str, np.ndarray]
    case_ids: dict[str, list[str]]
    excluded: int = 0


def image_split(cohort: Cohort, column: str, targets: Sequence[str], image_size: int, architecture: str = "densenet121") -> ImageSplit:
    """Cases of `column` with an image; targets = the cohort's columns (['label'] or its label_names). Images are checked."""
    from replication.models.densenet import check_images
    from replication.training.batches import IndexedImages

    if cohort.images is None:
        raise DataError(cohort.name, "the cohort has no images (images.npy); the image models need them")
    if column not in cohort.cases.columns:
        raise DataError(cohort.name, f"no split column {column!r} (it has {cohort.split_columns})")
    missing = [t for t in targets if t not in cohort.cases.columns]
    if missing:
        raise DataError(cohort.name, f"target columns {missing} are missing")
    cases = cohort.cases[cohort.cases["image_index"] >= 0]
    used = np.unique(cases["image_index"].to_numpy())
    first_case = cases.drop_duplicates("image_index").set_index("image_index")["case_id"]
    check_images(cohort.images[used] if len(used) < len(cohort.images) else cohort.images, image_size,
                 case_ids=list(first_case.loc[used]) if len(used) < len(cohort.images) else
                 [first_case.get(i, f"image {i}") for i in range(len(cohort.images))],
                 where=f"{cohort.name} images.npy", name=architecture)
    x, y, ids = {}, {}, {}
    for part in PARTS:
        rows = cases[cases[column] == part]
        if len(rows) == 0:
            raise DataError(cohort.name, f"{column}: the {part} part has no case with an image")
        x[part] = IndexedImages(cohort.images, rows["image_index"].to_numpy())
        y[part] = rows[list(targets)].to_numpy(np.float32)
        ids[part] = list(rows["case_id"])
    return ImageSplit(column, x, y, ids, excluded=int((cohort.cases["image_index"] < 0).sum()))


def resolve_imagenet(architecture: str, require: bool, imagenet_search: Sequence[str] | None, log: Log | None) -> tuple[str | None, str, str]:
    """("imagenet", "imagenet", note) when the cached file exists; otherwise scratch with a note (or an error if `require`).

    The note goes into committed manifests, so it names the file, not this machine's folders (the log does).
    """
    from replication.models.densenet import WeightsUnavailable, architecture as arch_of, imagenet_weights_path, require_imagenet_weights

    arch = arch_of(architecture)
    path = imagenet_weights_path(architecture, imagenet_search)
    if path is not None:
        return "imagenet", "imagenet", f"ImageNet weights from the Keras cache ({path.name})"
    try:
        require_imagenet_weights(architecture, imagenet_search)
    except WeightsUnavailable as e:
        if require:
            raise
        why = (f"{arch.imagenet_file} is not in the Keras cache; nothing is downloaded" if arch.imagenet_file
               else "none exist for this architecture")
        note = (f"ImageNet weights for {arch.display} are not available offline ({why}). Documented fallback: the encoder "
                "starts from scratch (docs/IMAGE.md).")
        if log:
            log(f"{e} Documented fallback: the encoder starts from scratch (docs/IMAGE.md).")
        return None, "scratch", note
    raise AssertionError("unreachable")  # pragma: no cover
