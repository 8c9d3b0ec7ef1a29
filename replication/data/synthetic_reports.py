"""IU-style report text for synthetic cases, written from the case's ground truth.

Every sentence is either a positive mention of exactly one finding or contains no finding keyword
unless it is negated with "no", "without" or "negative for" (and then mentions no finding positively).
Tests (and anyone auditing the text) can therefore recover what a report says with keyword lists and a
sentence-level negation check. Hedged mentions always carry one of HEDGE_CUES; stated mentions never do.
Laterality is the patient's: "right" is the left half of the image.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

HEDGE_CUES = ("possible", "questionable", "borderline", "may represent", "cannot be excluded", "likely", "probable")

# What a reader searches a cleaned report for, per finding (a token matches the pattern): the words that state
# a finding. The generator writes a finding's keyword only in its positive mentions or after a negation.
FINDING_KEYWORDS: dict[str, str] = {
    "cardiomegaly": r"cardiomegaly|enlarg",
    "nodule": r"nodul",
    "mass": r"^mass(es)?$",
    "opacity": r"opacit|consolidation|airspace|pneumonia",
    "effusion": r"effusion",
    "pneumothorax": r"pneumothora",
    "atelectasis": r"atelecta",
    "degenerative_spine": r"degenerative|osteophyte|spondylosis|spurring",
    "granuloma": r"granulom",
}

# Mention = {"name", "hedged": bool, "side": "right"|"left"|"bilateral"|None, "zone": "upper"|"middle"|"lower"|None,
#            "severity": a size word ("mild", "small", "moderate", "large"), "mm": int}
Mention = Mapping[str, object]

_LOCATIONS = {
    ("right", "upper"): ("right upper lobe", "right apex", "right upper lung"),
    ("right", "middle"): ("right midlung", "right middle lobe", "right perihilar region"),
    ("right", "lower"): ("right lower lobe", "right base", "right lung base"),
    ("left", "upper"): ("left upper lobe", "left apex", "left upper lung zone"),
    ("left", "middle"): ("left midlung", "lingula", "left perihilar region"),
    ("left", "lower"): ("left lower lobe", "left base", "left lung base"),
}

# Positive templates per finding: (stated, hedged). Fields: {loc}, {side}, {sev}, {mm}, {cm}.
_FINDINGS_TEXT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cardiomegaly": (
        ("The heart is enlarged.", "Cardiomegaly.", "{Sev} cardiomegaly.", "The cardiac silhouette is {sev}ly enlarged.",
         "Heart size is enlarged."),
        ("The heart is borderline enlarged.", "Borderline cardiomegaly.", "The cardiac silhouette is borderline enlarged.",
         "Heart size is borderline enlarged, possible mild cardiomegaly."),
    ),
    "nodule": (
        ("There is a {mm} mm nodule in the {loc}.", "{Mm} mm nodule in the {loc}.",
         "A {sev} pulmonary nodule projects over the {loc}.", "Nodule in the {loc} measuring {mm} mm."),
        ("Possible small nodule in the {loc}.", "Questionable nodule in the {loc}.",
         "A small {loc} nodule cannot be excluded.", "Nodular density in the {loc} may represent a nodule."),
    ),
    "mass": (
        ("There is a {cm} cm mass in the {loc}.", "Large mass in the {loc} measuring {cm} cm.",
         "A {cm} cm {loc} mass is present."),
        ("Possible mass in the {loc}.", "Rounded density in the {loc} may represent a mass.",
         "A {loc} mass cannot be excluded."),
    ),
    "opacity": (
        ("There is focal consolidation in the {loc}.", "Patchy airspace opacity in the {loc}.",
         "{Loc} airspace disease.", "There is an opacity in the {loc} consistent with pneumonia."),
        ("Subtle opacity in the {loc} may represent early pneumonia.", "Possible airspace disease in the {loc}.",
         "Questionable focal consolidation in the {loc}."),
    ),
    "effusion": (
        ("There is a {sev} {side} pleural effusion.", "{Sev} {side} pleural effusion.",
         "{Side} pleural effusion is present, {sev} in size."),
        ("Possible {sev} {side} pleural effusion.", "Blunting of the {side} costophrenic angle may represent a small effusion.",
         "A small {side} pleural effusion cannot be excluded."),
    ),
    "effusion_bilateral": (
        ("There are {sev} bilateral pleural effusions.", "{Sev} bilateral pleural effusions.",
         "Bilateral pleural effusions, {sev} in size."),
        ("Possible small bilateral pleural effusions.", "Blunting of both costophrenic angles may represent small effusions."),
    ),
    "pneumothorax": (
        ("There is a {sev} {side} apical pneumothorax.", "{Sev} {side} pneumothorax.",
         "A {side} pneumothorax is present, {sev} in size."),
        ("Questionable small {side} apical pneumothorax.", "A tiny {side} pneumothorax cannot be excluded.",
         "Possible small {side} pneumothorax."),
    ),
    "atelectasis": (
        ("Linear atelectasis in the {loc}.", "There is subsegmental atelectasis in the {loc}.",
         "Platelike atelectasis in the {loc}."),
        ("Streaky density in the {loc}, likely atelectasis.", "Possible atelectasis in the {loc}.",
         "Linear density in the {loc} may represent atelectasis."),
    ),
    "degenerative_spine": (
        ("Degenerative changes of the thoracic spine.", "There are {sev} degenerative changes of the thoracic spine.",
         "Thoracic spine osteophytes.", "Spurring of the thoracic spine consistent with spondylosis."),
        ("Possible mild degenerative change of the thoracic spine.", "Questionable early osteophytes of the thoracic spine."),
    ),
    "granuloma": (
        ("Calcified granuloma in the {loc}.", "There is a stable calcified granuloma in the {loc}.",
         "{Mm} mm calcified granuloma in the {loc}."),
        ("Small density in the {loc}, likely a calcified granuloma.", "Possible calcified granuloma in the {loc}."),
    ),
}

_IMPRESSION_TEXT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cardiomegaly": (("Cardiomegaly.", "{Sev} cardiomegaly."), ("Borderline cardiomegaly.", "Borderline enlarged heart.")),
    "nodule": (("{Loc} nodule. Recommend CT for further evaluation.", "{Mm} mm {loc} nodule."),
               ("Possible small {loc} nodule.", "Questionable {loc} nodule, CT may be helpful.")),
    "mass": (("{Loc} mass, recommend CT.", "{Cm} cm {loc} mass."), ("Possible {loc} mass, recommend CT.",)),
    "opacity": (("{Loc} pneumonia.", "{Loc} airspace disease."), ("Possible early {loc} pneumonia.",)),
    "effusion": (("{Sev} {side} pleural effusion.",), ("Possible small {side} pleural effusion.",)),
    "effusion_bilateral": (("{Sev} bilateral pleural effusions.",), ("Possible small bilateral pleural effusions.",)),
    "pneumothorax": (("{Sev} {side} pneumothorax.",), ("Questionable small {side} pneumothorax.",)),
    "atelectasis": (("{Loc} atelectasis.",), ("{Loc} density, likely atelectasis.",)),
    "degenerative_spine": (("Degenerative changes of the thoracic spine.",), ("Possible mild degenerative spine disease.",)),
    "granuloma": (("Old granulomatous disease.", "Calcified granuloma in the {loc}."), ("Probable calcified granuloma.",)),
}

_ACUTE_ORDER = ("pneumothorax", "effusion", "opacity", "mass", "nodule", "cardiomegaly", "atelectasis",
                "granuloma", "degenerative_spine")
_CHRONIC = ("granuloma", "degenerative_spine")

_HEART_NORMAL = ("The heart is normal in size.", "Heart size is within normal limits.", "Normal heart size.",
                 "The cardiomediastinal silhouette is within normal limits.", "The cardiac silhouette is normal in size and contour.")
_MEDIASTINUM = ("The mediastinum is unremarkable.", "Mediastinal contours are within normal limits.",
                "The mediastinal contour is normal.", "")
_LUNGS_CLEAR = ("The lungs are clear.", "Lungs are clear bilaterally.", "The lungs are well expanded and clear.",
                "Clear lungs.")
_LUNGS_OTHERWISE = ("The lungs are otherwise clear.", "Otherwise the lungs are clear.", "")
_NEG_OPACITY = ("No focal consolidation.", "There is no focal airspace disease.", "No focal airspace opacity.", "")
_NEG_NODULE = ("No suspicious pulmonary nodules or masses.", "", "", "")
_NEG_PLEURA = {  # keyed by (effusion mentioned, pneumothorax mentioned)
    (False, False): ("No pneumothorax or pleural effusion.", "There is no pneumothorax or pleural effusion.",
                     "No pleural effusion. No pneumothorax.", "No pneumothorax or large pleural effusion."),
    (True, False): ("No pneumothorax.", "There is no pneumothorax.", ""),
    (False, True): ("No pleural effusion.", "There is no pleural effusion.", ""),
    (True, True): ("",),
}
_NEG_BONE = ("No acute bony abnormality.", "No acute osseous findings.", "", "")
_EXTRAS = ("Midline sternotomy XXXX.", "Cholecystectomy clips are present.", "Surgical clips project over the upper abdomen.",
           "Mildly hyperexpanded lungs.", "Pulmonary vasculature is within normal limits.", "The XXXX are intact.",
           "Stable appearance of the chest.")
_IMPRESSION_NORMAL = ("No acute cardiopulmonary disease.", "No acute cardiopulmonary abnormality.",
                      "No acute cardiopulmonary process.", "Normal chest x-XXXX.", "No acute pulmonary findings.",
                      "Negative chest x-XXXX.")
_INDICATIONS = ("XXXX-year-old male with chest pain.", "XXXX-year-old female with XXXX.", "Chest pain.", "Shortness of breath.",
                "Cough.", "Preop.", "XXXX", "Positive TB test.", "Dyspnea.", "Follow-up.", "Fever and cough.",
                "XXXX-year-old XXXX with shortness of breath.", "Pre-employment exam.", "Fatigue, weakness.")
_COMPARISONS = ("None.", "None available.", "XXXX", "XXXX, XXXX", "Chest radiographs XXXX.", "PA and lateral chest XXXX.",
                "Chest x-XXXX dated XXXX.", "None")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _fill(template: str, m: Mention, loc: str) -> str:
    side_word = str(m.get("side") or "right")
    mm = int(m.get("mm", 10))  # type: ignore[arg-type]
    values = {"loc": loc, "side": side_word, "sev": str(m.get("severity", "small")), "mm": str(mm), "cm": f"{mm / 10:.1f}"}
    for k in list(values):
        values[_cap(k)] = _cap(values[k])
    return template.format(**values)


def write_report(rng: np.random.Generator, mentions: Sequence[Mention], extra_rate: float = 0.25) -> dict[str, str]:
    """The four IU report sections for one case; `mentions` are the findings the radiologist reports."""
    by_name = {str(m["name"]): m for m in mentions}
    # One location phrase per finding, used by both sections (a report does not move its nodule).
    locs = {n: _pick(rng, _LOCATIONS.get((m.get("side"), m.get("zone")), ("lungs",))) for n, m in by_name.items()}
    findings: list[str] = []

    def key(name: str) -> str:
        return "effusion_bilateral" if name == "effusion" and by_name[name].get("side") == "bilateral" else name

    def say(name: str) -> None:
        m = by_name[name]
        findings.append(_fill(_pick(rng, _FINDINGS_TEXT[key(name)][bool(m["hedged"])]), m, locs[name]))

    findings.append(_pick(rng, _HEART_NORMAL) if "cardiomegaly" not in by_name else "")
    if "cardiomegaly" in by_name:
        say("cardiomegaly")
    findings.append(_pick(rng, _MEDIASTINUM))
    lung = [n for n in ("opacity", "mass", "nodule", "atelectasis", "granuloma") if n in by_name]
    for name in lung:
        say(name)
    findings.append(_pick(rng, _LUNGS_OTHERWISE) if lung else _pick(rng, _LUNGS_CLEAR))
    if "opacity" not in by_name:
        findings.append(_pick(rng, _NEG_OPACITY))
    if "nodule" not in by_name and "mass" not in by_name:
        findings.append(_pick(rng, _NEG_NODULE))
    for name in ("effusion", "pneumothorax"):
        if name in by_name:
            say(name)
    findings.append(_pick(rng, _NEG_PLEURA[("effusion" in by_name, "pneumothorax" in by_name)]))
    if "degenerative_spine" in by_name:
        say("degenerative_spine")
    else:
        findings.append(_pick(rng, _NEG_BONE))
    if rng.random() < extra_rate:
        findings.append(_pick(rng, _EXTRAS))
    # Shuffle lightly: keep heart first, swap two middle sentences sometimes, as radiologists do.
    body = [s for s in findings if s]
    if len(body) > 3 and rng.random() < 0.3:
        i = int(rng.integers(1, len(body) - 1))
        body[i], body[i + 1] = body[i + 1], body[i]

    ranked = [n for n in _ACUTE_ORDER if n in by_name]
    chosen = [n for n in ranked if n not in _CHRONIC or rng.random() < 0.4][:3]
    if not chosen:
        impression = _pick(rng, _IMPRESSION_NORMAL)
    else:
        parts = [_fill(_pick(rng, _IMPRESSION_TEXT[key(n)][bool(by_name[n]["hedged"])]), by_name[n], locs[n]) for n in chosen]
        if len(parts) > 1 and rng.random() < 0.4:
            impression = " ".join(f"{i}. {p}" for i, p in enumerate(parts, 1))
        else:
            impression = " ".join(parts)
    return {
        "comparison": _pick(rng, _COMPARISONS),
        "indication": _pick(rng, _INDICATIONS),
        "findings": " ".join(body),
        "impression": impression,
    }
