"""`python -m ui.web`: the web server alone (API, SSE, dashboard), for running replicas
beside an engine: `$NATS_URL`, `$PLAYBOOK_WEB_HOST` (default 127.0.0.1), `$PLAYBOOK_WEB_PORT` (8080)."""
from app.root import main

main(services=(), doors=("web",))
