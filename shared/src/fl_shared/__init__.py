"""Shared, torch-free package root for the federated-learning fleet platform."""

__version__ = "0.1.0"
