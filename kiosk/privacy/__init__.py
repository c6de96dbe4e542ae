"""Privacy-safe diagnostics: keyed perceptual encryption gated by the visual security index.

Frames leave the kiosk only perceptually encrypted (:mod:`kiosk.privacy.encryption`) and only when
the visual security index (:mod:`kiosk.privacy.vsi`) certifies that nothing recognizable leaks;
:mod:`kiosk.privacy.diag` packages them and :mod:`kiosk.privacy.cli` exposes the commands.
"""
