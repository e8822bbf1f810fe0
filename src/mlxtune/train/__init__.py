"""Built-in trainers (MLX LoRA/DoRA through mlx-lm's tuner)."""
