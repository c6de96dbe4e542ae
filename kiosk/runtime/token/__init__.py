"""The token photo: the passport-ready crop of a capture (docs/token.md).

`make_token(still, landmarks, fmt)` levels the eyes, scales and crops the full-resolution still
to a print format's geometry, and cuts the ISO/IEC 19794-5 Token Frontal image beside it;
`print_sheet()` lays copies out for a photo lab.
"""

from kiosk.runtime.token.photo import TokenPhoto, make_token
from kiosk.runtime.token.render import print_sheet

__all__ = ["TokenPhoto", "make_token", "print_sheet"]
