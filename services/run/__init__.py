"""Runs: the pure decider, the state fold, the repository and the command service."""
