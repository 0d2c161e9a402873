"""`python -m services.run`: the command handlers and the run advancer."""
from services.app import main

main({"run"})
