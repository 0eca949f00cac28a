"""Peer simulators, run from .venv-peers (Python 3.11-3.13) by the tests and scripts/develop."""
