"""Model file formats: GGUF files (a header read and bounded before MLX opens one, tensors and
tokenizer imported to an MLX folder, an MLX folder exported back) and Ollama's model store (GGUF
blobs behind a manifest). `importing.py` imports either; `mlxtune.exporting` writes them."""
