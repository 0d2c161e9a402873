"""`python -m services.run`: the command handlers and the run advancer."""
from app.root import main

main(services=("run",))
