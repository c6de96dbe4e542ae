"""Forensics on a final capture: each check scores the whole image and fills one key of a report."""
