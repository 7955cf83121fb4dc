"""SuperNodeKey: the ECDSA P-384 key a SuperNode authenticates with, in OpenSSH format.

Flower loads it with ``load_ssh_private_key`` and accepts NIST curves only (what
``ssh-keygen -t ecdsa -b 384`` makes). Only `fl-edge-agent enroll` imports this module: the
daemon never loads `cryptography` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True)
class SuperNodeKey:
    """A freshly generated key pair, serialized as its two files will hold it."""

    private_openssh: bytes = field(repr=False)
    public_openssh: str

    @classmethod
    def generate(cls, comment: str = "") -> SuperNodeKey:
        """A new P-384 key; ``comment`` ends the public key line (e.g. the device name)."""
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        line = public.decode()
        # A comment is one word after the key (ssh-keygen puts user@host there).
        word = "".join(c if c.isascii() and (c.isalnum() or c in "._@-") else "_" for c in comment)
        return cls(private_openssh=private, public_openssh=f"{line} {word}" if word else line)
