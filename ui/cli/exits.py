"""The CLI's exit codes: what a script can tell apart without reading the message."""

# The CLI's exit codes, as the README and docs/cli.md give them (a test holds them to it).
EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_DENIED = 5     # no valid token, or the token's grants do not allow it (the refusal is recorded)
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141     # Ctrl-C; the reader of stdout went away (128 + the signal)
EXIT_CODES = {
    EXIT_COMPLETED: "completed (or done)",
    EXIT_FAILED: "run failed or command rejected",
    EXIT_INVALID: "invalid input (nothing was started)",
    EXIT_CANCELLED: "cancelled",
    EXIT_UNAVAILABLE: "engine or NATS unreachable",
    EXIT_DENIED: "refused access: no valid token, or its grants do not allow it",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "the reader of the output went away (a closed pipe)",
}
DENIED_CODES = ("unauthenticated", "forbidden", "forged_actor", "too_many_failures")
