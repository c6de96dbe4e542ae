"""Model runtime: LiteRT interpreters, tensor I/O, and the registry of a verified bundle."""
