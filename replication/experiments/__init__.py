"""One module per result of the paper; each owns its protocol, its summary, its Markdown table and its figure.

| paper result | module | DVC stage(s) |
|---|---|---|
| Table 2 (custom / generic / random embedding) | `table2` | word2vec, table2 |
| ChestX-ray14 pretraining (CheXNet recipe) | `pretrain` | pretrain |
| Fig. 4 (transfer: ChestX-ray14 vs ImageNet vs scratch) | `transfer` | transfer |
| Fig. 5 and Table 3 (text, image, multimodal curves) | `curves` | curves, table3 |
| Figs. 2-3 (detection) and its measured localisation | `localisation` | localise |
| every paper number beside ours | `comparison` (index: `reference`, paper/reference.yaml) | compare |
"""
