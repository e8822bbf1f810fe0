"""mlxtune's version, on the ground floor: stage fingerprints, manifests and `--version` read it
without importing the package's front (`mlxtune/__init__.py`, which imports the pipeline)."""

__version__ = "0.1.0"
