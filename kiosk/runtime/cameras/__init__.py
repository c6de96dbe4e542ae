"""Cameras and frame sources: one spec parser (`spec`), one camera interface with the
preview->still geometry (`base`), the Raspberry Pi camera (`picamera`), image/folder/video/USB
sources for `kiosk check` (`sources`) and the cameras `kiosk run` drives (`live`)."""
