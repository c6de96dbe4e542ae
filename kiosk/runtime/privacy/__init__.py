"""Privacy-safe diagnostics: keyed perceptual encryption gated by the visual security index.

Frames leave the kiosk only perceptually encrypted (:mod:`kiosk.runtime.privacy.encryption`) and only when
the visual security index (:mod:`kiosk.runtime.privacy.vsi`) certifies that nothing recognizable leaks;
:mod:`kiosk.runtime.privacy.diag` packages them and :mod:`kiosk.cli.privacy` exposes the commands.
"""
