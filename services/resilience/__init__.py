"""Resilience: what a failure means, so the engine knows whether trying again can help."""
