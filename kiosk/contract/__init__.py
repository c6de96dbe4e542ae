"""The contract between training and the kiosk: what both sides must agree on, in one place.

A leaf package: it imports only the standard library, `cryptography`, `pydantic` and the
stdlib-only `kiosk.errors` and `kiosk.fileio` (never OpenCV, numpy or TensorFlow), so training,
deploy and every kiosk layer may import it.
`manifest` is the only code that reads, writes, validates and signs a model bundle's manifest.
"""
