"""`python -m services.learning`: the learning service alone (one per knowledge store)."""
from services.app import main

main({"learning"})
