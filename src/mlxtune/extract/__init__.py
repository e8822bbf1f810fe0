"""Built-in extractors (PDF through pypdf, plain text / markdown) and text cleaning."""
