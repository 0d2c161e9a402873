"""The run service: answers commands on `pb.cmd.<Command>` and advances runs (rules: `services.domain.run`)."""
