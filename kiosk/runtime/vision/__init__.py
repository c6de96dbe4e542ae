"""Vision stages: face detection, 68-point landmarks, region crops."""
