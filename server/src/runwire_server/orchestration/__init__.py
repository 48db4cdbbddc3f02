"""Orchestration: the rules every state change goes through. Knows neither gRPC nor SQL."""
