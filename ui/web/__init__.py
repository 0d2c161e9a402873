"""The web app: JSON API, SSE and the dashboard (served by `playbook up`)."""
