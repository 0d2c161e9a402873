"""The composition root: every service and door built from one Settings. Only process edges import it."""
