"""`kiosk run`: the capture service — camera, live checks, the session state machine, forensics
and the store — around which `kiosk.service.console` serves the operator's web page."""
