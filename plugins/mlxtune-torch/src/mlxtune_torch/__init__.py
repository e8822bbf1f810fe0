"""mlxtune's transformers + PEFT backend: the `torch` trainer and the `torch` generation backend.

The core package never imports torch; mlxtune finds this package through its `mlxtune` entry
point. Recipes select it with `train: {use: torch}` and `ask: {backend: torch}`.
"""
