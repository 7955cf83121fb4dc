"""fl-coordinator: Flower SuperLink supervisor, REST API, device registry and model store."""

__version__ = "0.1.0"
