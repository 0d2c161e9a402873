"""`python -m services.approval`: gate deadlines; run as many as you like."""
from app.root import main

main(services=("approval",))
