"""How much one playbook may hold; beyond it, validation refuses the playbook (PB004) before reading it all.

Both bounds keep validation, planning and a run's memory linear and its time in seconds:
100,000 steps validate in about ten seconds on two cores, and every service holds a
started run's playbook whole. Ten thousand steps of the usual kind take about 2 MiB.
"""
MAX_BYTES = 32 * 2**20  # playbook text, as UTF-8: room for the steps below at ~300 bytes each
MAX_STEPS = 100_000  # steps in one playbook
