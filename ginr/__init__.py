"""ginr: generalizable implicit neural representations (BiMamba encoder, SCENT-style decoders)."""

__version__ = "0.1.0"
