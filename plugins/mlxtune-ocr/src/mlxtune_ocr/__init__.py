"""mlxtune-ocr: the `ocr` extractor (see extractor.py)."""
