"""The IRIS engine: tokenizer and backbone seams, world model, actor-critic, imagination, training."""
