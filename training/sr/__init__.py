"""Super-resolution x4 (Padmanabhan: SRCNN-style generator vs SRGAN, MSE vs perceptual loss)."""
