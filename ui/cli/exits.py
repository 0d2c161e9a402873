"""The CLI's exit codes: what a script can tell apart without reading the message."""

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_DENIED = 5     # no valid token, or the token's grants do not allow it (the refusal is recorded)
DENIED_CODES = ("unauthenticated", "forbidden", "forged_actor", "too_many_failures")
