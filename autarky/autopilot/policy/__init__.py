"""The autopilot's pure policy: rules, detection, decisions, learning, remediation, goals."""
