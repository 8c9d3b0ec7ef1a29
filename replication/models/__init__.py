"""Models: the text CNN, the DenseNet-121 image model, the multimodal, and the baselines."""
