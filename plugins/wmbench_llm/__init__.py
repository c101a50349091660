"""Built-in wmbench plugin: llm."""
