"""Detection library of the paper (§3, Figs. 2-3): where the classifiers look, in the image and in the report.

- ``integrated_gradients`` / ``integrated_gradients_batch``: IG for any Keras model and output unit, three
  quadrature rules, completeness delta; ``split_at_embedding`` / ``attribute_text`` for token-id inputs.
- ``sight_sensitivity_mask`` / ``cluster_regions``: the threshold on min-max normalised attributions and the
  single-linkage clusters with circles around them.
- ``word_scores``: per-word scores from gradients at the embedding output.
- ``localisation``: pointing game, IoU, IoBB, bootstrap CIs and baselines (top-k, Otsu, connected components).
- ``render``: circles over the X-ray, the sight-sensitivity panel, interactive / static word heatmaps.

Importing this package imports neither TensorFlow nor JAX: the backend's gradient module is loaded on first use.
"""

from replication.explain.attribution import (
    DEFAULT_RULE,
    DEFAULT_STEPS,
    RULES,
    Attribution,
    EmbeddingSplit,
    TextAttribution,
    attribute_text,
    completeness_table,
    evaluations_to_reach,
    gradients,
    gradients_batch,
    integrated_gradients,
    integrated_gradients_batch,
    interpolation,
    model_output,
    split_at_embedding,
)
from replication.explain.localisation import (
    accuracy_at,
    bootstrap_ci,
    box_mask,
    circles_mask,
    connected_component_regions,
    iobb,
    iou,
    otsu_mask,
    otsu_threshold,
    pointing_game,
    region_hit,
    scale_box,
    signal_fraction_on,
    top_k_mask,
)
from replication.explain.regions import (
    SIGHT_SENSITIVITY,
    Region,
    cluster_regions,
    default_cluster_distance,
    default_margin,
    normalise,
    reduce_channels,
    sight_sensitivity_mask,
    single_linkage_labels,
)
from replication.explain.render import overlay_regions, sight_sensitivity_panel, word_heatmap_html, word_heatmap_png
from replication.explain.words import OOV_TOKEN, WordScores, word_scores

__all__ = [
    "RULES", "DEFAULT_RULE", "DEFAULT_STEPS", "Attribution", "EmbeddingSplit", "TextAttribution", "attribute_text", "completeness_table",
    "evaluations_to_reach", "gradients", "gradients_batch", "integrated_gradients", "integrated_gradients_batch", "interpolation",
    "model_output", "split_at_embedding",
    "SIGHT_SENSITIVITY", "Region", "cluster_regions", "default_cluster_distance", "default_margin", "normalise",
    "reduce_channels", "sight_sensitivity_mask", "single_linkage_labels",
    "OOV_TOKEN", "WordScores", "word_scores",
    "accuracy_at", "bootstrap_ci", "box_mask", "circles_mask", "connected_component_regions", "iobb", "iou",
    "otsu_mask", "otsu_threshold", "pointing_game", "region_hit", "scale_box", "signal_fraction_on", "top_k_mask",
    "overlay_regions", "sight_sensitivity_panel", "word_heatmap_html", "word_heatmap_png",
]
