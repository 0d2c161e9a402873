"""The executor: runs scheduled steps (actions, validators, validations)."""
