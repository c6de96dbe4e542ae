"""The runtime layer: what runs on a frame or a capture (models, vision, checks, pipeline,
forensics, privacy, cameras, image I/O). Imports config and contract only (docs/architecture.md)."""
