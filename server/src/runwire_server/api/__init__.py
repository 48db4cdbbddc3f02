"""gRPC handlers: proto in and out; they validate, call the services and convert."""
