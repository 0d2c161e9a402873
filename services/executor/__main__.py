"""`python -m services.executor`: runs scheduled steps; run as many as you like."""
from app.root import main

main(services=("executor",))
