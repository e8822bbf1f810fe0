"""Built-in summarizers: documents -> [research question, approach] pairs."""
