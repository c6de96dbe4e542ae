"""The operator console (Starlette): the page, its JSON state, the MJPEG preview, /health."""
