"""Settings, clock, ids and logging: the pieces every other package may import."""
