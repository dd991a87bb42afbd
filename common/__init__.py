"""Shared code of the dataset-distillation project: synthetic sets, networks, data, augmentation, evaluation."""
