"""Reading radiographs from PNG into the uint8 (size, size) arrays every model uses."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from replication.errors import DataError, ParameterError

HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
# what Pillow raises on a damaged or hostile file: its own errors, a cut stream, bad deflate data, a header
# claiming more pixels than Image.MAX_IMAGE_PIXELS (a decompression bomb, refused rather than decoded)
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                 Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageReadError(DataError):
    """One image could not be decoded; the caller decides whether that excludes its case."""


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ParameterError("image_size", size, "a whole number of pixels >= 1")


def load_image(path: str | os.PathLike, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one PNG (8- or 16-bit, grey, palette or colour, with or without alpha, any size) to uint8 (size, size).

    Returns the array and the file's own (width, height), which box coordinates need.
    16-bit images are min-max scaled to 0..255 (their stored range varies by scanner; a constant image
    becomes 0); colour and palette images are converted to grey by ITU-R 601 luma and alpha is ignored,
    as Keras' `load_img(color_mode="grayscale")` does; the image is resized to a square without padding,
    as Keras' `load_img(target_size=...)` did in the authors' notebooks.
    """
    _check_size(size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()  # decode now, so a truncated file fails here, with its name
                original = im.size
                if im.mode in HIGH_DEPTH_MODES:
                    arr = np.asarray(im, dtype=np.float64)
                    if not np.isfinite(arr).all():
                        raise ValueError("pixel values that are not finite numbers")
                    lo, hi = float(arr.min()), float(arr.max())
                    arr = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
                    im8 = Image.fromarray(np.round(arr).astype(np.uint8), mode="L")
                else:
                    im8 = im.convert("L")
                out = np.asarray(im8.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    except DECODE_ERRORS as e:
        raise ImageReadError(path, f"unreadable image ({type(e).__name__}: {e})") from None
    return out, original


def read_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels; ImageReadError if it has none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except DECODE_ERRORS as e:
        raise ImageReadError(path, f"unreadable image header ({type(e).__name__}: {e})") from None


def load_images(
    paths: Sequence[str | os.PathLike], size: int, desc: str = "images"
) -> tuple[np.ndarray, list[tuple[int, int] | None], list[tuple[int, str]]]:
    """Decode many PNGs; unreadable files are returned as (position, reason), not raised.

    The array holds only the readable images, in order; `sizes[i]` is None for a failed file.
    """
    _check_size(size)
    images: list[np.ndarray] = []
    sizes: list[tuple[int, int] | None] = []
    failures: list[tuple[int, str]] = []
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", disable=None if len(paths) > 200 else True)):
        try:
            arr, original = load_image(p, size)
        except ImageReadError as e:
            failures.append((i, str(e)))
            sizes.append(None)
            continue
        images.append(arr)
        sizes.append(original)
    stacked = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    return stacked, sizes, failures


def list_pngs(folder: str | os.PathLike) -> dict[str, Path]:
    """File stem → path of every PNG directly inside `folder` (empty when the folder is absent).

    DataError when two files differ only in the case of their suffix (a.png, a.PNG): which one is the image?
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() == ".png" and p.is_file():
            if p.stem in found:
                raise DataError(folder, f"two files for one image: {found[p.stem].name} and {p.name}; expected one", record=p.stem)
            found[p.stem] = p
    return found
