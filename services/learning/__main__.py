"""`python -m services.learning`: the learning service alone (one per knowledge store)."""
from app.root import main

main(services=("learning",))
