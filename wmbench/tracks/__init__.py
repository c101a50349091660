"""What a benchmark measures besides the agent's returns: the world-model track (data efficiency of the
tokenizer and world model alone, :mod:`wmbench.tracks.world_model`)."""
