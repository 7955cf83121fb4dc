"""fl-edge-agent: enrolls a device, sends heartbeats and supervises its Flower SuperNode."""

__version__ = "0.1.0"
