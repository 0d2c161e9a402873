"""The public contract: events, commands, the playbook schema, subjects, codec. No I/O."""
