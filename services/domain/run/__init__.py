"""The run aggregate: its state, the decider and the rules it applies (gates, rollback, dry runs)."""
