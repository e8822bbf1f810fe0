"""Evaluation: question sets, metrics, comparing models, reports and model cards."""
