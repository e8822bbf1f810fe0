"""Finding and loading a model: resolution (hub id, folder, or a GGUF / Ollama model imported
through `mlxtune.gguf`), loading with mlx-lm (the dtype policy of `mlxtune.device`, QLoRA's
quantized base, the adapter) and the tiny offline model. Model file formats are `mlxtune.gguf`;
the memory planner is `mlxtune.train.planner`, applied to a recipe by `mlxtune.plan`."""
