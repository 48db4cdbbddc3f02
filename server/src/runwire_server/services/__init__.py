"""Run services: units of work over a Session that apply orchestration and call storage."""
