"""Governance: approval policies, change-control plans (PCCP), the gate, full reviews and deployments."""
