"""Built-in wmbench plugin: vqvae."""
