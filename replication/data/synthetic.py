"""Deterministic synthetic chest X-rays with IU-style reports and pixel-exact ground truth.

Why it exists: the whole pipeline (text CNN, DenseNet-121, fusion, integrated-gradients "detection") has to
run offline and be testable, and real data lacks what the paper's claims need to be checked against: where
each finding is, whether the report mentions it, and where the distracting burned-in markers and dark
borders are. Nothing computed on these cohorts is the paper's data or the paper's numbers.

Design: every case is drawn from its own RNG, seeded by (seed, kind, index) (and its patient's by
(seed, kind, patient)), so a cohort's first N cases do not depend on its size, on thread counts or on
global random state. All random draws happen before rendering, so a case can be re-rendered without
any subset of its findings or noise (`render_case(..., without=...)`) and differ only inside their masks.
Rendering is in "patient coordinates" (u right-to-left of the image, v down, both about [-1, 1]) mapped to
pixels through a per-case pose; densities are combined additively and only then put through the
acquisition curve, which is pointwise, so each lesion's mask is exactly where its density change is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import numpy as np
import pandas as pd

from replication.data.store import Cohort
from replication.data.synthetic_reports import write_report
from replication.errors import ParameterError

GENERATOR_VERSION = "1.0"
FINDINGS: tuple[str, ...] = ("cardiomegaly", "nodule", "mass", "opacity", "effusion", "pneumothorax", "atelectasis",
                             "degenerative_spine", "granuloma")
NOISE: tuple[str, ...] = ("marker", "border")
MASK_NAMES: tuple[str, ...] = FINDINGS + NOISE
MIN_IMAGE_SIZE = 32  # the smallest input DenseNet-121 accepts in Keras
MAX_IMAGE_SIZE = 1024
KINDS = ("iu", "cxr14")
REPORT_STATES = ("stated", "hedged", "omitted", "absent", "false_mention")
MM_PER_UNIT = 180.0  # one patient-coordinate unit is about 18 cm (the lungs span ~1.6 units)

DEFAULT_PREVALENCE: dict[str, float] = {
    "cardiomegaly": 0.9, "nodule": 0.4, "mass": 0.2, "opacity": 0.8, "effusion": 0.4, "pneumothorax": 0.2,
    "atelectasis": 0.5, "degenerative_spine": 0.7, "granuloma": 0.6,
}
# Acquisition styles: the IU-like target and the ChestX-ray14-like source differ in field of view, contrast curve,
# noise texture, border and marker style -- the domain shift a transferred encoder has to cross.
ACQUISITIONS: dict[str, dict[str, Any]] = {
    "iu": {"fov": 0.97, "gain": 0.9, "offset": 0.0, "gamma": 1.15, "noise": 3.0, "grain": 0.0,
           "border": "collimation", "marker_texts": ("L", "R", "PA", "AP"), "marker_box": 0.0},
    "cxr14": {"fov": 0.85, "gain": 0.80, "offset": 0.10, "gamma": 0.85, "noise": 2.0, "grain": 4.0,
              "border": "padding", "marker_texts": ("L", "R", "AP", "PA", "PORTABLE"), "marker_box": 0.5},
}
_KIND_DEFAULTS = {"iu": {"cases": 3000, "images_per_patient": 1.0, "acquisition": "iu"},
                  "cxr14": {"cases": 6000, "images_per_patient": 3.0, "acquisition": "cxr14"}}
_KIND_CODE = {"iu": 1, "cxr14": 2}
_PREFIX = {"iu": "SYN-IU", "cxr14": "SYN-CXR14"}

# Densities (arbitrary units, 0 = air outside the body, ~1 = dense bone over soft tissue).
_SOFT, _SOFT_C, _MED, _AIR, _TEX, _SPINE, _RIB, _CLAV, _BUBBLE, _PTX, _LINE = (
    0.58, 0.16, 0.12, 0.44, 0.2, 0.08, 0.08, 0.12, 0.15, 0.07, 0.12)
_ZONES = {"upper": (-0.8, -0.3), "middle": (-0.3, 0.25), "lower": (0.25, 0.75)}

_GLYPHS = {ch: np.array([[c == "1" for c in row] for row in rows.split()], dtype=bool) for ch, rows in {
    "L": "10000 10000 10000 10000 10000 10000 11111", "R": "11110 10001 10001 11110 10100 10010 10001",
    "P": "11110 10001 10001 11110 10000 10000 10000", "A": "01110 10001 10001 11111 10001 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110", "T": "11111 00100 00100 00100 00100 00100 00100",
    "B": "11110 10001 10001 11110 10001 10001 11110", "E": "11111 10000 10000 11110 10000 10000 11111",
}.items()}


@dataclass(frozen=True)
class SynthParams:
    """Every knob of the generator; documented (with why the defaults are what they are) in docs/SYNTHETIC.md.

    None means "the kind's default" (see `resolved`).
    """

    cases: int | None = None                      # 3000 (iu) / 6000 (cxr14)
    image_size: int = 128
    abnormal_fraction: float = 0.6
    extra_finding_rate: float = 0.4               # chance of each further finding in an abnormal case (max 5)
    prevalence: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PREVALENCE))
    subtlety: float = 0.25                        # fraction of present findings drawn subtle
    subtle_contrast: float = 0.35                 # density multiplier of subtle findings (-> 0: invisible)
    omission_rate: float = 0.10                   # fraction of present findings the report leaves out
    hedge_rate: float = 0.15                      # fraction of present findings the report hedges
    false_mention_rate: float = 0.03              # per case: a hedged mention of a finding not in the image
    marker_rate: float = 0.5
    border_rate: float = 0.3
    noise_label_correlation: float = 0.0          # 0: noise independent of the label; 1: noise present iff abnormal
    acquisition: str | None = None                # "iu" / "cxr14"
    noise_scale: float = 1.0
    anatomy_variation: float = 1.0
    images_per_patient: float | None = None       # mean; 1 (iu) / 3 (cxr14)
    patient_persistence: float = 0.6              # chance a follow-up image keeps the patient's findings

    def resolved(self, kind: str) -> "SynthParams":
        """These parameters with the kind's defaults filled in and the prevalence completed."""
        _check_kind(kind)
        fill = {k: v for k, v in _KIND_DEFAULTS[kind].items() if getattr(self, k) is None}
        return replace(self, **fill, prevalence={**DEFAULT_PREVALENCE, **dict(self.prevalence)})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["prevalence"] = dict(self.prevalence)
        return d

    def validate(self) -> None:
        """Raise ParameterError naming the first knob the generator cannot honour."""
        for name in ("cases", "image_size"):
            v = getattr(self, name)
            if v is None and name == "cases":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ParameterError(name, v, "an integer")
        if self.cases is not None and self.cases < 1:
            raise ParameterError("cases", self.cases, "an integer >= 1")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ParameterError("image_size", self.image_size, f"{MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} (DenseNet-121's minimum)")
        for name in ("abnormal_fraction", "extra_finding_rate", "subtlety", "omission_rate", "hedge_rate",
                     "false_mention_rate", "marker_rate", "border_rate", "noise_label_correlation", "patient_persistence"):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        _check_range("subtle_contrast", self.subtle_contrast, 0.0, 1.0)
        if self.subtle_contrast == 0:
            raise ParameterError("subtle_contrast", 0, "a number in (0, 1]; use a tiny value for near-invisible findings")
        if self.omission_rate + self.hedge_rate > 1:
            raise ParameterError("hedge_rate", self.hedge_rate, f"<= 1 - omission_rate ({1 - self.omission_rate:g})")
        _check_range("noise_scale", self.noise_scale, 0.0, 10.0)
        _check_range("anatomy_variation", self.anatomy_variation, 0.0, 2.0)
        if self.images_per_patient is not None:
            _check_range("images_per_patient", self.images_per_patient, 1.0, 50.0)
        if self.acquisition is not None and self.acquisition not in ACQUISITIONS:
            raise ParameterError("acquisition", self.acquisition, f"one of {sorted(ACQUISITIONS)} or None")
        if not isinstance(self.prevalence, Mapping):
            raise ParameterError("prevalence", self.prevalence, "a mapping finding -> relative prevalence")
        unknown = sorted(set(self.prevalence) - set(FINDINGS))
        if unknown:
            raise ParameterError("prevalence", unknown, f"finding names among {list(FINDINGS)}")
        for name, v in self.prevalence.items():
            _check_range(f"prevalence.{name}", v, 0.0, 1.0)
        if self.abnormal_fraction > 0 and not any({**DEFAULT_PREVALENCE, **dict(self.prevalence)}.values()):
            raise ParameterError("prevalence", dict(self.prevalence), "at least one finding > 0 when abnormal_fraction > 0")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SynthParams":
        """Build from a profile/config mapping; unknown keys are an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParameterError(", ".join(unknown), {k: d[k] for k in unknown}, f"known synthetic parameters {sorted(known)}")
        params = cls(**dict(d))
        params.validate()
        return params


def _check_range(name: str, v: Any, lo: float, hi: float) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not (lo <= v <= hi):
        raise ParameterError(name, v, f"a number in [{lo:g}, {hi:g}]")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ParameterError("kind", kind, f"one of {list(KINDS)}")


# ----------------------------------------------------------------------------------------------- drawing (specs)

def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _jit(rng: np.random.Generator, base: float, spread: float, var: float) -> float:
    return base + var * spread * float(rng.uniform(-1, 1))


def _draw_anatomy(rng: np.random.Generator, var: float) -> dict[str, Any]:
    def ellipse(cx: float, cy: float, ax: float, ay: float) -> tuple[float, float, float, float]:
        return _jit(rng, cx, 0.03, var), _jit(rng, cy, 0.04, var), ax * _jit(rng, 1, 0.08, var), ay * _jit(rng, 1, 0.08, var)

    lungs = {"right": ellipse(-0.42, -0.02, 0.36, 0.64), "left": ellipse(0.41, 0.03, 0.34, 0.62)}  # right = image left
    return {
        "body_w": _jit(rng, 0.9, 0.06, var), "shoulder_y": _jit(rng, -0.64, 0.04, var), "lungs": lungs,
        "heart": ellipse(0.1, 0.36, 0.34, 0.26),
        "med_w": _jit(rng, 0.1, 0.015, var), "spine_w": _jit(rng, 0.065, 0.008, var),
        "spine_period": _jit(rng, 0.12, 0.01, var), "spine_phase": _u(rng, 0, 1),
        "rib_period": _jit(rng, 0.155, 0.012, var), "rib_phase": _u(rng, 0, 1), "rib_curv": _jit(rng, 0.5, 0.08, var),
        "clav_y": _jit(rng, -0.72, 0.04, var), "bubble": bool(rng.random() < 0.6), "bubble_dx": _u(rng, -0.06, 0.06),
    }


def _lung_point(rng: np.random.Generator, anat: dict, side: str, zone: str) -> tuple[float, float]:
    cx, cy, ax, ay = anat["lungs"][side]
    b = _u(rng, *_ZONES[zone])
    a = _u(rng, -0.6, 0.6) * math.sqrt(max(0.0, 1 - b * b))
    return cx + a * ax * (0.85 + 0.25 * b), cy + b * ay


def _draw_lesion(rng: np.random.Generator, name: str, anat: dict, subtle: bool) -> dict[str, Any]:
    """Geometry of one finding in patient coordinates (pose-free, so a patient's follow-ups share it)."""
    side = "right" if rng.random() < 0.5 else "left"
    zones = {"atelectasis": ("middle", "lower"), "mass": ("upper", "middle"), "granuloma": ("upper", "middle", "lower")}
    zone = str(rng.choice(zones.get(name, ("upper", "middle", "lower"))))
    L: dict[str, Any] = {"name": name, "subtle": subtle, "side": side, "zone": zone, "seed": int(rng.integers(2**31))}
    s = 0.7 if subtle else 1.0
    if name == "cardiomegaly":
        f = _u(rng, 1.1, 1.16) if subtle else _u(rng, 1.22, 1.42)
        L.update(side=None, zone=None, factor=f, severity="moderate" if f > 1.32 else "mild")
    elif name in ("nodule", "mass", "granuloma", "opacity", "atelectasis"):
        L["x"], L["y"] = _lung_point(rng, anat, side, zone)
        if name == "nodule":
            L.update(r=s * _u(rng, 0.028, 0.07), amp=_u(rng, 0.22, 0.32), severity="small")
        elif name == "mass":
            L.update(r=s * _u(rng, 0.09, 0.15), amp=_u(rng, 0.28, 0.4), severity="large",
                     lobes=[(_u(rng, -0.4, 0.4), _u(rng, -0.4, 0.4), _u(rng, 0.55, 0.85)) for _ in range(3)])
        elif name == "granuloma":
            k = int(rng.integers(1, 4))
            L.update(r=s * _u(rng, 0.014, 0.026), amp=_u(rng, 0.45, 0.65), severity="small",
                     extra=[_lung_point(rng, anat, side, zone) for _ in range(k - 1)])
        elif name == "opacity":
            L.update(ax=s * _u(rng, 0.1, 0.2), ay=s * _u(rng, 0.08, 0.18), amp=_u(rng, 0.18, 0.3), severity="moderate")
        else:
            L.update(length=s * _u(rng, 0.14, 0.26), thick=_u(rng, 0.018, 0.03), angle=_u(rng, -0.35, 0.35),
                     amp=_u(rng, 0.22, 0.32), severity="mild")
        L["mm"] = int(round(2 * L.get("r", L.get("ax", L.get("length", 0.05))) * MM_PER_UNIT))
    elif name == "effusion":
        if rng.random() < 0.15:
            L["side"] = "bilateral"
        h = _u(rng, 0.05, 0.09) if subtle else _u(rng, 0.12, 0.32)
        L.update(zone="lower", h=h, menisc=_u(rng, 0.05, 0.15), severity="small" if h < 0.14 else "moderate" if h < 0.24 else "large")
    elif name == "pneumothorax":
        r = _u(rng, 0.86, 0.92) if subtle else _u(rng, 0.7, 0.82)
        L.update(zone="upper", r_pl=r, severity="moderate" if r < 0.76 else "small")
    elif name == "degenerative_spine":
        k = int(rng.integers(2, 5))
        L.update(side=None, zone=None, first=int(rng.integers(-3, 6 - k)), count=k,
                 severity="mild" if k == 2 else "moderate", spur=s * _u(rng, 0.022, 0.032), amp=_u(rng, 0.22, 0.32))
    return L


def _draw_findings(rng: np.random.Generator, p: SynthParams, anat: dict) -> list[dict[str, Any]]:
    if rng.random() >= p.abnormal_fraction:
        return []
    k = 1
    while k < 5 and rng.random() < p.extra_finding_rate:
        k += 1
    w = np.array([p.prevalence[n] for n in FINDINGS], dtype=float)
    k = min(k, int((w > 0).sum()))
    chosen = sorted(rng.choice(len(FINDINGS), size=k, replace=False, p=w / w.sum()))
    return [_draw_lesion(rng, FINDINGS[i], anat, bool(rng.random() < p.subtlety)) for i in chosen]


def _walk(p: SynthParams, kind: str, seed: int, n: int) -> Iterator[tuple[int, dict, dict]]:
    """Yield (index, patient, image spec) for the first n cases; prefix-stable by construction."""
    code, index, patient_index = _KIND_CODE[kind], 0, 0
    acq = ACQUISITIONS[str(p.acquisition)]
    while index < n:
        prng = np.random.default_rng([seed, code, 1, patient_index])
        n_images = 1 + int(prng.poisson(float(p.images_per_patient) - 1))
        anat = _draw_anatomy(prng, p.anatomy_variation)
        patient = {"index": patient_index, "anatomy": anat, "findings": _draw_findings(prng, p, anat)}
        for follow_up in range(n_images):
            if index >= n:
                return
            yield index, patient, _draw_image(np.random.default_rng([seed, code, 0, index]), p, acq, patient, follow_up)
            index += 1
        patient_index += 1


def _draw_image(rng: np.random.Generator, p: SynthParams, acq: dict, patient: dict, follow_up: int) -> dict[str, Any]:
    var = p.anatomy_variation
    spec: dict[str, Any] = {
        "follow_up": follow_up, "anatomy": patient["anatomy"],
        # shift x, shift y, scale, rotation (radians); gain, offset, gamma of the contrast curve
        "pose": (_jit(rng, 0, 0.05, var), _jit(rng, 0.02, 0.05, var), acq["fov"] * _jit(rng, 1, 0.05, var),
                 _jit(rng, 0, 0.05, var)),
        "exposure": (acq["gain"] * _jit(rng, 1, 0.08, var), acq["offset"] + _jit(rng, 0, 0.03, var),
                     acq["gamma"] * _jit(rng, 1, 0.1, var)),
        "noise_sigma": acq["noise"] * p.noise_scale * _u(rng, 0.7, 1.3), "grain": acq["grain"] * p.noise_scale,
        "noise_seed": int(rng.integers(2**63)),
    }
    keep = follow_up == 0 or rng.random() < p.patient_persistence
    lesions = patient["findings"] if keep else _draw_findings(rng, p, patient["anatomy"])
    spec["lesions"] = lesions
    label = int(bool(lesions))
    present = {L["name"] for L in lesions}
    states = {n: "absent" for n in FINDINGS}
    for L in lesions:
        u = rng.random()
        states[L["name"]] = "omitted" if u < p.omission_rate else "hedged" if u < p.omission_rate + p.hedge_rate else "stated"
    mentions = [{**L, "hedged": states[L["name"]] == "hedged"} for L in lesions if states[L["name"]] in ("stated", "hedged")]
    absent = [n for n in FINDINGS if n not in present and p.prevalence[n] > 0]
    if absent and rng.random() < p.false_mention_rate:
        w = np.array([p.prevalence[n] for n in absent])
        name = absent[int(rng.choice(len(absent), p=w / w.sum()))]
        states[name] = "false_mention"
        mentions.append({**_draw_lesion(rng, name, patient["anatomy"], False), "hedged": True})
    spec["states"], spec["mentions"], spec["label"] = states, mentions, label
    c = p.noise_label_correlation
    for noise, rate in (("marker", p.marker_rate), ("border", p.border_rate)):
        prob = rate + c * (1 - rate) if label else rate * (1 - c)
        spec[noise] = _draw_noise(rng, noise, acq) if rng.random() < prob else None
    spec["report_seed"] = int(rng.integers(2**63))
    return spec


def _draw_noise(rng: np.random.Generator, noise: str, acq: dict) -> dict[str, Any]:
    if noise == "marker":
        texts = acq["marker_texts"]
        top = rng.random() < 0.8
        return {"text": texts[int(rng.integers(len(texts)))], "h": _u(rng, 0.05, 0.09), "x": _u(rng, 0, 1),
                "y": _u(rng, 0, 0.12) if top else _u(rng, 0.85, 1), "value": int(rng.integers(220, 256)),
                "box": bool(rng.random() < acq["marker_box"])}
    if acq["border"] == "padding":
        w = _u(rng, 0.03, 0.12)
        sides = {"left": w, "right": w} if rng.random() < 0.6 else {"top": w, "bottom": w}
        return {"sides": sides, "tilt": 0.0, "value": int(rng.integers(0, 6))}
    sides = {s: _u(rng, 0.02, 0.1) for s in ("left", "right", "top", "bottom") if rng.random() < 0.5}
    if not sides:
        sides = {str(rng.choice(["left", "right", "top", "bottom"])): _u(rng, 0.02, 0.1)}
    return {"sides": sides, "tilt": _u(rng, -0.04, 0.04), "value": int(rng.integers(0, 12))}


# ----------------------------------------------------------------------------------------------- rendering

@lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1
    X, Y = np.meshgrid(c, c)
    X.flags.writeable = Y.flags.writeable = False
    return X, Y


@lru_cache(maxsize=32)
def _interp(n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = (np.arange(n, dtype=np.float32) + 0.5) / n * (k - 1)
    i0 = np.floor(pos).astype(np.intp)
    return i0, np.minimum(i0 + 1, k - 1), (pos - i0).astype(np.float32)


def _upsample(small: np.ndarray, n: int) -> np.ndarray:
    """Bilinear upsampling by gathers and elementwise ops only (bit-reproducible, no BLAS)."""
    i0, i1, w = _interp(n, small.shape[0])
    a = small[i0] * (1 - w)[:, None] + small[i1] * w[:, None]
    return a[:, i0] * (1 - w) + a[:, i1] * w


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    return np.clip(x * np.float32(1 / width), 0, 1)


def _q(U: np.ndarray, V: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    a = (U - np.float32(cx)) * np.float32(1 / ax)
    b = (V - np.float32(cy)) * np.float32(1 / ay)
    return a * a + b * b


def _segment(U: np.ndarray, V: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], th: float) -> np.ndarray:
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((U - p0[0]) * dx + (V - p0[1]) * dy) * np.float32(1 / (dx * dx + dy * dy)), 0, 1)
    ex, ey = U - p0[0] - t * dx, V - p0[1] - t * dy
    return _ramp(1 - (ex * ex + ey * ey) * np.float32(1 / th**2), 0.5)


class _Anatomy:
    """The lesion-free density map and the components lesions are defined relative to."""

    def __init__(self, A: dict, U: np.ndarray, V: np.ndarray, tex01: np.ndarray) -> None:
        self.U, self.V = U, V
        a, b = U * np.float32(1 / A["body_w"]), (V - np.float32(0.3)) * np.float32(1 / 1.3)
        thorax = a * a * a * a + b * b  # a superellipse: straight flanks, abdomen running off the bottom edge
        body = np.maximum(_ramp(1 - thorax, 0.06), _ramp(1 - _q(U, V, 0, A["shoulder_y"] + 0.08, A["body_w"] * 1.3, 0.4), 0.25))
        body = np.maximum(body, _ramp(1 - _q(U, V, 0, -1.05, 0.24, 0.5), 0.1))
        self.body_inner = body >= 0.5
        self.heart = self.heart_profile(1.0, A)
        mw = A["med_w"] * (1 + 0.3 * _ramp(V + 0.3, 0.8))
        self.med = _ramp(mw - np.abs(U), 0.03) * _ramp(0.55 - V, 0.1)
        self.lung, self.q, self.t, self.lat = {}, {}, {}, {}
        for side, (cx, cy, ax, ay) in A["lungs"].items():
            t = np.clip((V - cy) * np.float32(1 / ay), -1, 1)
            a = (U - cx) / (np.float32(ax) * (np.float32(0.85) + np.float32(0.25) * t))
            b = (V - cy) * np.float32(1 / ay)
            q = a * a + b * b
            self.lung[side], self.q[side], self.t[side] = _ramp(1 - q, 0.08), q, t
            self.lat[side] = (U - cx) * np.float32((-1 if side == "right" else 1) / ax)
        lung = np.maximum(self.lung["right"], self.lung["left"])
        self.block = (1 - self.heart) * (1 - 0.85 * self.med)
        qmin = np.minimum(self.q["right"], self.q["left"])
        self.tex = _TEX * tex01 * (1.15 - 0.55 * np.clip(qmin, 0, 1)) * lung
        self.air = lung * self.block
        sw = A["spine_w"]
        ph = (V - A["spine_phase"] * A["spine_period"]) * np.float32(1 / A["spine_period"])
        ph = ph - np.floor(ph)
        vert = _ramp(0.5 - np.abs(ph - 0.5), 0.1)
        spine = _ramp(sw - np.abs(U), 0.015) * (0.55 + 0.45 * vert) * _ramp(0.9 - V, 0.3)
        rp = (V - A["rib_curv"] * U * U) * np.float32(1 / A["rib_period"]) - A["rib_phase"]
        rp = rp - np.floor(rp)
        ribs = _ramp(1 - np.abs(rp - 0.5) * np.float32(1 / 0.17), 0.5) * _ramp(0.72 - V, 0.1) * _ramp(V + 0.85, 0.1)
        ribs *= _ramp(np.abs(U) - 0.07, 0.03) * _ramp(1 - thorax, 0.2) * (0.35 + 0.65 * lung)
        cy = A["clav_y"]
        clav = np.maximum(_segment(U, V, (-0.06, cy), (-0.66, cy - 0.1), 0.035),
                          _segment(U, V, (0.06, cy), (0.66, cy - 0.1), 0.035))
        D = body * (_SOFT + _SOFT_C * (1 - np.clip(thorax, 0, 1)))  # soft tissue, thicker in the middle
        D += _MED * self.med + _SPINE * spine + _RIB * ribs + _CLAV * clav
        D -= (_AIR - self.tex) * self.air
        D -= 0.12 * _ramp(0.045 - np.abs(U), 0.02) * _ramp(-0.32 - V, 0.1) * body  # trachea
        if A["bubble"]:
            lcx, lcy, _, lay = A["lungs"]["left"]
            D -= _BUBBLE * _ramp(1 - _q(U, V, lcx - 0.05 + A["bubble_dx"], lcy + lay + 0.1, 0.09, 0.06), 0.3) * body
        self.density = D

    def heart_profile(self, f: float, A: dict) -> np.ndarray:
        hx, hy, hax, hay = A["heart"]
        return _ramp(1 - _q(self.U, self.V, hx + 0.35 * (f - 1) * hax, hy, hax * f, hay * (1 + 0.5 * (f - 1))), 0.15)


def _lesion_delta(L: dict, an: _Anatomy, A: dict, px: float, contrast: float) -> np.ndarray:
    """Density change of one finding, relative to the lesion-free anatomy (so lesions add independently)."""
    U, V, name = an.U, an.V, L["name"]
    amp = np.float32(L.get("amp", 1.0) * contrast)
    if name == "cardiomegaly":
        grown = np.maximum(an.heart_profile(L["factor"], A) - an.heart, 0)  # where the larger heart displaces lung
        return contrast * (_AIR - an.tex) * np.maximum(an.lung["right"], an.lung["left"]) * (1 - 0.85 * an.med) * grown
    if name == "effusion":
        out = np.zeros_like(U)
        for side in (("right", "left") if L["side"] == "bilateral" else (L["side"],)):
            cx, cy, ax, ay = A["lungs"][side]
            level = (cy + ay - L["h"]) - L["menisc"] * np.clip(an.lat[side], 0, 1)
            out += contrast * (_AIR - an.tex) * an.lung[side] * an.block * _ramp(V - level, 0.035)
        return out
    r_min = 0.75 * px  # a lesion drawn at all covers at least one pixel centre
    if name == "degenerative_spine":
        out = np.zeros_like(U)
        period, sw, r = A["spine_period"], A["spine_w"], max(L["spur"], r_min)
        for k in range(L["first"], L["first"] + L["count"]):
            disc = A["spine_phase"] * period + k * period
            for sx in (-1, 1):
                out = np.maximum(out, _ramp(1 - _q(U, V, sx * (sw + 0.4 * r), disc, r, 0.6 * r), 0.5))
            out = np.maximum(out, 0.5 * _ramp(sw - np.abs(U), 0.01) * _ramp(1 - np.abs(V - disc) * np.float32(1 / 0.014), 0.5))
        return amp * out
    lung = an.lung[L["side"]]
    if name == "pneumothorax":
        rq = np.sqrt(an.q[L["side"]])
        sector = _ramp(0.3 - an.t[L["side"]], 0.2) * _ramp(an.lat[L["side"]] + 0.3, 0.3) * lung
        dark = (an.tex + _PTX) * an.block * _ramp(rq - L["r_pl"], 0.03)
        line = _LINE * _ramp(1 - np.abs(rq - (L["r_pl"] - 0.015)) * np.float32(1 / 0.012), 0.5)
        return contrast * sector * (line - dark)
    if name == "nodule":
        return amp * _ramp(1 - _q(U, V, L["x"], L["y"], max(L["r"], r_min), max(L["r"], r_min)), 0.6) * lung
    if name == "granuloma":
        r = max(L["r"], r_min)
        dome = _ramp(1 - _q(U, V, L["x"], L["y"], r, r), 0.35)
        for x, y in L["extra"]:
            dome = np.maximum(dome, _ramp(1 - _q(U, V, x, y, r, r), 0.35))
        return amp * dome * lung
    if name == "mass":
        r = L["r"]
        dome = np.zeros_like(U)
        for dx, dy, k in [(0.0, 0.0, 1.0)] + list(L["lobes"]):
            dome = np.maximum(dome, _ramp(1 - _q(U, V, L["x"] + dx * r, L["y"] + dy * r, k * r, k * r), 0.5))
        return amp * dome * lung
    if name == "opacity":
        prng = np.random.default_rng(L["seed"])
        patch = np.clip(0.55 + 0.35 * _upsample(prng.standard_normal((7, 7), dtype=np.float32), U.shape[0]), 0.15, 1)
        return amp * _ramp(1 - _q(U, V, L["x"], L["y"], L["ax"], L["ay"]), 0.6) * patch * lung
    if name == "atelectasis":
        c, s = math.cos(L["angle"]), math.sin(L["angle"])
        du, dv = U - L["x"], V - L["y"]
        a = (c * du + s * dv) * np.float32(1 / L["length"])
        b = (c * dv - s * du) * np.float32(1 / max(L["thick"], r_min))
        return amp * _ramp(1 - (a * a + b * b), 0.5) * lung
    raise AssertionError(name)


def _render(spec: dict, n: int, without: frozenset[str], subtle_contrast: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    A = spec["anatomy"]
    X, Y = _grid(n)
    dx, dy, scale, rot = spec["pose"]
    c, s = math.cos(rot), math.sin(rot)
    Xs, Ys = X - np.float32(dx), Y - np.float32(dy)
    U = (np.float32(c) * Xs + np.float32(s) * Ys) * np.float32(1 / scale)
    V = (np.float32(c) * Ys - np.float32(s) * Xs) * np.float32(1 / scale)
    nrng = np.random.default_rng(spec["noise_seed"])
    tex01 = np.clip(0.45 + 0.3 * (_upsample(nrng.standard_normal((16, 16), dtype=np.float32), n)
                                  + 0.6 * _upsample(nrng.standard_normal((40, 40), dtype=np.float32), n)), 0, 1)
    noise = nrng.standard_normal((n, n), dtype=np.float32) * np.float32(spec["noise_sigma"])
    if spec["grain"]:
        noise += spec["grain"] * _upsample(nrng.standard_normal((n // 3, n // 3), dtype=np.float32), n)
    an = _Anatomy(A, U, V, tex01)
    D = an.density.copy()
    masks = np.zeros((n, n), dtype=np.uint16)
    px = 2.0 / (n * scale)
    for L in spec["lesions"]:
        if L["name"] in without:
            continue
        delta = _lesion_delta(L, an, A, px, subtle_contrast if L["subtle"] else 1.0) * an.body_inner
        D += delta
        masks |= (delta != 0).astype(np.uint16) << MASK_NAMES.index(L["name"])
    gain, offset, gamma = spec["exposure"]
    I = np.clip(np.float32(offset) + np.float32(gain) * D, 0, 1) ** np.float32(gamma) * np.float32(255) + noise
    img = np.clip(np.rint(I), 0, 255).astype(np.uint8)
    for noise_name in ("border", "marker"):  # burned in last: they hide whatever lies beneath
        if spec[noise_name] is None or noise_name in without:
            continue
        region, values = (_border if noise_name == "border" else _marker)(spec[noise_name], n)
        img[region] = values[region] if isinstance(values, np.ndarray) else values
        masks[region] = np.uint16(1 << MASK_NAMES.index(noise_name))
    return img, masks, an.body_inner


def _border(b: dict, n: int) -> tuple[np.ndarray, int]:
    iy, ix = np.mgrid[0:n, 0:n].astype(np.float32)
    region = np.zeros((n, n), dtype=bool)
    t = b["tilt"]
    for side, w in b["sides"].items():
        w = max(1.0, w * n)
        if side == "left":
            region |= ix < w + t * (iy - n / 2)
        elif side == "right":
            region |= ix >= n - w + t * (iy - n / 2)
        elif side == "top":
            region |= iy < w + t * (ix - n / 2)
        else:
            region |= iy >= n - w + t * (ix - n / 2)
    return region, b["value"]


def _marker(m: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    h = max(7, int(round(m["h"] * n)))
    cw, text = max(5, int(round(h * 5 / 7))), m["text"]
    gap = max(1, cw // 5)
    if len(text) * (cw + gap) > 0.6 * n:
        text = text[0]
    width, pad = len(text) * (cw + gap) - gap, 2 if m["box"] else 0
    x0 = pad + int(round(m["x"] * (n - width - 2 * pad - 1)))
    y0 = pad + int(round(m["y"] * (n - h - 2 * pad - 1)))
    rows, cols = (np.arange(h) * 7) // h, (np.arange(cw) * 5) // cw
    region = np.zeros((n, n), dtype=bool)
    values = np.zeros((n, n), dtype=np.uint8)
    if m["box"]:
        region[y0 - pad:y0 + h + pad, x0 - pad:x0 + width + pad] = True
        values[region] = 20
    for i, ch in enumerate(text):
        g = _GLYPHS[ch][rows][:, cols]
        x = x0 + i * (cw + gap)
        region[y0:y0 + h, x:x + cw] |= g
        values[y0:y0 + h, x:x + cw][g] = m["value"]
    return region, values


# ----------------------------------------------------------------------------------------------- cohorts

def _row(kind: str, index: int, patient: dict, spec: dict) -> dict[str, Any]:
    pre = _PREFIX[kind]
    row: dict[str, Any] = {"case_id": f"{pre}-{index + 1:06d}", "patient_id": f"{pre}-P{patient['index'] + 1:06d}",
                           "image_index": index}
    present = {L["name"]: L for L in spec["lesions"]}
    if kind == "iu":
        row.update(write_report(np.random.default_rng(spec["report_seed"]), spec["mentions"]))
        row["label"] = spec["label"]
    else:
        row["follow_up"] = spec["follow_up"]
        # ChestX-ray14's labels were mined from reports: the same omissions and (hedged) false mentions apply.
        for name in FINDINGS:
            row[name] = int(spec["states"][name] in ("stated", "hedged", "false_mention"))
        row["no_finding"] = int(not any(row[name] for name in FINDINGS))
    for name in FINDINGS:
        row[f"finding_{name}"] = int(name in present)
    for name in FINDINGS:
        row[f"report_{name}"] = spec["states"][name]
    for name in FINDINGS:
        row[f"subtle_{name}"] = int(name in present and present[name]["subtle"])
    row["noise_marker"], row["noise_border"] = int(spec["marker"] is not None), int(spec["border"] is not None)
    return row


def _prepare(params: SynthParams, kind: str, seed: int) -> SynthParams:
    _check_kind(kind)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError("seed", seed, "an integer >= 0")
    params.validate()
    return params.resolved(kind)


class RenderedCase(NamedTuple):
    image: np.ndarray   # uint8 (size, size)
    masks: np.ndarray   # uint16 bit field over MASK_NAMES
    row: dict[str, Any]  # the case's row of the cases table
    body: np.ndarray    # bool: inside the body outline


def render_case(params: SynthParams, kind: str, seed: int, index: int, without: Iterable[str] = ()) -> RenderedCase:
    """Re-render case `index` of generate(params, kind, seed), optionally leaving findings/noise out.

    The ground-truth check for masks: the image without a finding differs from the full one only inside
    that finding's mask.
    """
    p = _prepare(params, kind, seed)
    without = frozenset(without)
    if without - set(MASK_NAMES):
        raise ParameterError("without", sorted(without - set(MASK_NAMES)), f"names among {list(MASK_NAMES)}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ParameterError("index", index, "an integer >= 0")
    for i, patient, spec in _walk(p, kind, seed, index + 1):
        if i == index:
            img, masks, body = _render(spec, p.image_size, without, p.subtle_contrast)
            return RenderedCase(img, masks, _row(kind, i, patient, spec), body)
    raise AssertionError("unreachable")


def generate(params: SynthParams, kind: str, seed: int) -> Cohort:
    """A synthetic cohort: IU-like (binary label, reports) or ChestX-ray14-like (multi-label, no text)."""
    from tqdm import tqdm

    p = _prepare(params, kind, seed)
    n, size = int(p.cases), p.image_size  # type: ignore[arg-type]
    images = np.empty((n, size, size), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint16)
    rows = []
    for i, patient, spec in tqdm(_walk(p, kind, seed, n), total=n, disable=None, desc=f"synthetic {kind}", unit="case"):
        images[i], masks[i], _ = _render(spec, size, frozenset(), p.subtle_contrast)
        rows.append(_row(kind, i, patient, spec))
    parameters = {"generator": "replication.data.synthetic", "generator_version": GENERATOR_VERSION,
                  "kind": kind, "seed": int(seed), **p.to_dict()}
    return Cohort(
        name=f"synthetic-{kind}", source="synthetic", synthetic=True, cases=pd.DataFrame(rows),
        images=images, masks=masks, mask_names=list(MASK_NAMES),
        label_names=[] if kind == "iu" else list(FINDINGS), boxes=None, parameters=parameters,
        notes=[f"SYNTHETIC {'IU-like' if kind == 'iu' else 'ChestX-ray14-like'} cohort from replication.data.synthetic "
               f"v{GENERATOR_VERSION} (seed {seed}): not the paper's data; numbers computed on it are not the paper's.",
               "finding_*, report_*, subtle_* and noise_* columns and masks.npy are generator ground truth, "
               "not model inputs. Laterality words are the patient's (right = image left)."],
    )
