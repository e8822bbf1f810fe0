"""Model resolution (hub id or local path) and the tiny offline model builder."""
