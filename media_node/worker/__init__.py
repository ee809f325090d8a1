"""One worker process of a node: its rooms, the signaling that admits peers into them,
the commands it applies and its reconciliation with the control plane."""
