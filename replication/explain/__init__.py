"""Detection library of the paper (§3, Figs. 2-3): where the classifiers look, in the image and in the report.

What a user calls is exported here; the building blocks stay in their modules:

- ``attribution``: ``integrated_gradients`` (one batched entry point: a single example is a batch of one; the
  defaults, midpoint rule and 256 steps, live there), ``gradients``, ``completeness_table``;
  ``split_at_embedding`` / ``attribute_text`` for token-id inputs.
- ``regions``: ``sight_sensitivity_mask`` / ``cluster_regions``: the threshold on min-max normalised attributions
  and the single-linkage clusters with circles (``Region``) around them.
- ``words``: ``word_scores``, per-word scores from gradients at the embedding output.
- ``localisation``: pointing game, IoU, IoBB, bootstrap CIs and the baselines (top-k, Otsu, connected components).
- ``scoring``: the compared methods' registry and the scorers (``attribution_maps``, ``score_masks``,
  ``score_boxes``, ``score_box_methods``).
- ``case``: one case explained with a curves setting's saved models (``load_models``, ``explain_case``) and
  drawn (``render_case``).
- ``render``: circles over the X-ray, the sight-sensitivity panel, interactive / static word heatmaps.

Importing this package imports neither TensorFlow nor JAX: the backend's gradient module is loaded on first use.
"""

from replication.explain.attribution import attribute_text, completeness_table, gradients, integrated_gradients, split_at_embedding
from replication.explain.case import explain_case, load_models, render_case
from replication.explain.regions import Region, cluster_regions, sight_sensitivity_mask
from replication.explain.render import overlay_regions, sight_sensitivity_panel, word_heatmap_html, word_heatmap_png
from replication.explain.scoring import attribution_maps, score_box_methods, score_boxes, score_masks
from replication.explain.words import word_scores

__all__ = [
    "integrated_gradients", "gradients", "completeness_table", "attribute_text", "split_at_embedding",
    "sight_sensitivity_mask", "cluster_regions", "Region", "word_scores",
    "overlay_regions", "sight_sensitivity_panel", "word_heatmap_html", "word_heatmap_png",
    "attribution_maps", "score_masks", "score_boxes", "score_box_methods",
    "load_models", "explain_case", "render_case",
]
