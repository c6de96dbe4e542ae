"""The contract between training and the kiosk: what both sides must agree on, in one place.

The bottom layer: it imports only the standard library and `cryptography` (never OpenCV, numpy
or TensorFlow), so training, deploy and every kiosk layer may import it. It also
holds the error types and atomic file writes every layer shares.
`manifest` is the only code that reads, writes, validates and signs a model bundle's manifest.
"""
