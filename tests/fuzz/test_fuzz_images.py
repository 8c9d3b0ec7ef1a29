"""The image loaders on unusual but valid PNGs (right pixels, by hand conversion) and on damaged files (a named error)."""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st
from PIL import Image

from fuzzkit import fuzz, luma
from fuzzkit import radiographs  # noqa: F401 (pytest fixtures)
from replication.data.images import ImageReadError, load_image, load_images

MODES = ["L", "I;16", "RGB", "RGBA", "P", "P+transparency", "LA", "1", "constant-L", "constant-I;16"]


def unusual_png(draw, base: np.ndarray, mode: str) -> tuple[Image.Image, np.ndarray, str]:
    """A PNG of an unusual kind made from a radiograph, and the grey image a hand conversion gives."""
    h = draw(st.integers(1, base.shape[0]))
    w = draw(st.integers(1, base.shape[1]))
    top, left = draw(st.integers(0, base.shape[0] - h)), draw(st.integers(0, base.shape[1] - w))
    grey = base[top:top + h, left:left + w].copy()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "L":
        return Image.fromarray(grey), grey, mode
    if mode in ("I;16", "constant-I;16"):
        scale, offset = draw(st.integers(1, 257)), draw(st.integers(0, 1000))
        values = grey.astype(np.uint16) * scale + offset if mode == "I;16" else np.full(grey.shape, offset, np.uint16)
        lo, hi = float(values.min()), float(values.max())
        expected = np.zeros(grey.shape, np.uint8) if hi <= lo else np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)
        return Image.fromarray(values), expected, mode
    if mode == "constant-L":
        value = draw(st.integers(0, 255))
        return Image.fromarray(np.full(grey.shape, value, np.uint8)), np.full(grey.shape, value, np.uint8), mode
    if mode in ("RGB", "RGBA"):
        rgb = np.stack([grey, rng.integers(0, 256, grey.shape, dtype=np.uint8), np.flipud(grey)], axis=-1)
        if mode == "RGBA":  # alpha is ignored, as Keras' grayscale load_img does
            rgba = np.concatenate([rgb, rng.integers(0, 256, grey.shape + (1,), dtype=np.uint8)], axis=-1)
            return Image.fromarray(rgba, "RGBA"), luma(rgb), mode
        return Image.fromarray(rgb, "RGB"), luma(rgb), mode
    if mode.startswith("P"):
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        index = grey
        im = Image.fromarray(index, "P")
        im.putpalette(palette.reshape(-1).tolist())
        if mode == "P+transparency":
            im.info["transparency"] = int(index.flat[0])
        return im, luma(palette[index]), mode
    if mode == "LA":
        alpha = rng.integers(0, 256, grey.shape, dtype=np.uint8)
        return Image.merge("LA", (Image.fromarray(grey), Image.fromarray(alpha))), grey, mode
    bits = grey > 127
    return Image.fromarray(bits), np.where(bits, 255, 0).astype(np.uint8), mode


@pytest.mark.parametrize("mode", MODES)
@fuzz(6)
@given(data=st.data())
def test_unusual_valid_pngs_load_with_the_right_pixels(radiographs, mode, data):
    base = radiographs[data.draw(st.integers(0, len(radiographs) - 1))]
    im, expected, mode = unusual_png(data.draw, base, mode)
    square = expected.shape[0] == expected.shape[1]
    size = expected.shape[0] if square and data.draw(st.booleans()) else data.draw(st.integers(1, 40))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.png"
        im.save(path, "PNG", **({"transparency": im.info["transparency"]} if "transparency" in im.info else {}))
        with Image.open(path) as check:
            assert check.mode == {"constant-L": "L", "constant-I;16": "I;16", "P+transparency": "P"}.get(mode, mode)
        arr, original = load_image(path, size)
    assert original == (expected.shape[1], expected.shape[0])
    want = expected if size == expected.shape[0] == expected.shape[1] else \
        np.asarray(Image.fromarray(expected).resize((size, size), Image.Resampling.LANCZOS))
    assert arr.dtype == np.uint8 and arr.shape == (size, size)
    np.testing.assert_array_equal(arr, want, err_msg=mode)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with other dimensions in its IHDR (and a right CRC, so only the size is wrong)."""
    body = bytearray(png[16:29])
    body[0:8] = struct.pack(">II", width, height)
    return png[:8] + _chunk(b"IHDR", bytes(body)) + png[33:]


@pytest.mark.parametrize("kind", ["zero-size", "cut", "flip", "garbage", "huge-size", "zero-size-header", "text"])
@fuzz(8)
@given(data=st.data())
def test_a_damaged_png_is_a_named_error_or_its_true_pixels(radiographs, kind, data):
    base = radiographs[data.draw(st.integers(0, len(radiographs) - 1))]
    buf = io.BytesIO()
    Image.fromarray(base).save(buf, "PNG")
    good = buf.getvalue()
    blob = {
        "zero-size": lambda: b"",
        "cut": lambda: good[: data.draw(st.integers(1, len(good) - 1))],
        "flip": lambda: (lambda b, at: b[:at] + bytes([b[at] ^ data.draw(st.integers(1, 255))]) + b[at + 1:])(good, data.draw(st.integers(0, len(good) - 1))),
        "garbage": lambda: good[:8] + data.draw(st.binary(min_size=0, max_size=200)),
        "huge-size": lambda: _with_size(good, data.draw(st.sampled_from([2**16, 2**20, 2**31 - 1])), data.draw(st.sampled_from([2**16, 2**31 - 1]))),
        "zero-size-header": lambda: _with_size(good, data.draw(st.sampled_from([0, 24])), 0),
        "text": lambda: b"Image Index,Finding Labels\n00000001_000.png,Mass\n",
    }[kind]()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.png"
        path.write_bytes(blob)
        (Path(tmp) / "good.png").write_bytes(good)
        try:
            arr, original = load_image(path, 24)
        except ImageReadError as e:
            assert str(path) in str(e) and "unreadable image" in str(e)
        else:  # decoded: then it must be the image itself (a change Pillow cannot see, such as a cut after the pixels)
            assert kind in ("cut", "flip"), kind
            np.testing.assert_array_equal(arr, base)
            assert original == (24, 24)
        stack, sizes, failures = load_images([Path(tmp) / "good.png", path, Path(tmp) / "good.png"], 24)
    assert [i for i, _ in failures] in ([], [1]) and sizes[0] == sizes[2] == (24, 24)
    assert len(stack) == 3 - len(failures) and (stack[0] == base).all() and (stack[-1] == base).all()
