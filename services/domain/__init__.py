"""The engine's rules, pure: folds of events into state, and decisions on that state.

Nothing here does I/O, reads a clock or draws a random number: what a decision needs
arrives on its command. Services (one layer up) load state, call these, and store
what they decide.
"""
