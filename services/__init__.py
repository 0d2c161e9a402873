"""Back-end services, each reacting to events on JetStream."""
