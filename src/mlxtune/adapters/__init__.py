"""Trained adapters after training: converting between mlx-lm's and PEFT's formats, and fusing
an adapter into its base model."""
