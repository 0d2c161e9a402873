"""The approval service: gate deadline timers and the directory of who is in which group."""
