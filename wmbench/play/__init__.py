"""``wmbench play``: look at the agent, the game and the world model, in a pygame window or headless."""
