"""Business rules. Each function takes the service context and keyword-only arguments and raises domain errors."""
