"""Tamper / morph detection (Nimma et al.): synthetic manipulations, ELA CNN, localisation."""
