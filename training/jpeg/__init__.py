"""JPEG forensics (Luo, Zi, Zhang, Kang): JPEG detectors, dithering baselines, the anti-forensic
GAN, the paper's tables and the hardened detector the kiosk ships."""
