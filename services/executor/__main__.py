"""`python -m services.executor`: one executor process; run as many as you like."""
from services.app import main

main({"executor"})
