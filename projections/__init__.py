"""Pure folds from events to the views people and agents read."""
