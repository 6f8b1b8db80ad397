"""Inference: the predictor that serves prompts from a cached image encoding."""
