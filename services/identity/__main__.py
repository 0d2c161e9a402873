"""`python -m services.identity`: the token commands (create, list, revoke)."""
from app.root import main

main(services=("identity",))
