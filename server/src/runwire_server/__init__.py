"""Runwire server: the gRPC state service for flows, flow runs, task runs and logs."""
