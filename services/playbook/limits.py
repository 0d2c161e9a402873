"""How much one playbook may hold; beyond it, validation refuses the playbook (PB004) before reading it all.

Both bounds keep validation, planning and a run's memory linear and its time in seconds:
100,000 steps validate in about ten seconds on two cores, and every service holds a
started run's playbook whole. Ten thousand steps of the usual kind take about 2 MiB.
"""
MAX_BYTES = 32 * 2**20  # playbook text, as UTF-8: room for the steps below at ~300 bytes each
MAX_STEPS = 100_000  # steps in one playbook


def too_large(size: int) -> str:
    """What to tell someone whose playbook text is `size` bytes, more than MAX_BYTES: in bytes when MiB to one
    decimal would read as the limit itself."""
    said, limit = _mib(size), _mib(MAX_BYTES)
    if said == limit:
        said, limit = f"{size:,} bytes", f"{MAX_BYTES:,} bytes"
    return f"the playbook is {said}, more than the {limit} one playbook may be; split it into smaller playbooks"


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
