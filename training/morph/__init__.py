"""Morph attack detection (S-MAD): synthetic landmark morphs of real faces, trees on texture features."""
