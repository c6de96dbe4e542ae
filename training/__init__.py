"""Desktop side of idkiosk: data collection, training, evaluation and export (TensorFlow lives here)."""
