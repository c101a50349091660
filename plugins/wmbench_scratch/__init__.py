"""Built-in wmbench plugin: scratch."""
