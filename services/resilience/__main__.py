"""`python -m services.resilience`: retry decisions; run as many as you like."""
from services.app import main

main({"resilience"})
