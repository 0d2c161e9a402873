"""The resilience service: classifies failures, runs remediations, arms retry timers (rules: `services.domain`)."""
