"""Learning: what past runs teach about each step, playbook and target, and what to change because of it."""
