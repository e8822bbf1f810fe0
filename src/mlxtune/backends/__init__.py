"""Built-in generation backends (MLX through mlx-lm)."""
