"""idkiosk on-device runtime: frame -> detection -> landmarks -> regions -> scores -> verdict.

Never imports TensorFlow: TFLite models run on LiteRT (see `kiosk.runtime.models.litert`).
"""

__version__ = "0.1.0"
