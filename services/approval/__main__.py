"""`python -m services.approval`: gate deadlines; run as many as you like."""
from services.app import main

main({"approval"})
