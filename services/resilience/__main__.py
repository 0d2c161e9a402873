"""`python -m services.resilience`: retry decisions; run as many as you like."""
from app.root import main

main(services=("resilience",))
