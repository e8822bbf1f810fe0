"""Curating pairs before they are formatted: rules (the default), an LLM judge, or none."""
