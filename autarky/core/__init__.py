"""What every capability shares: settings, the Temporal connection, hosts, redaction, logging,
metrics, durations, findings, actions and the approval gate's types."""
