"""Approval gates: who may approve, when a gate opens, the deadline timers."""
