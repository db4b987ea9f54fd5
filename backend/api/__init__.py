"""The HTTP API under /v1: thin routes over the services, JSON errors with machine-readable codes."""
