"""Built-in formatters: pairs -> training examples, and the prompt for a new question."""
