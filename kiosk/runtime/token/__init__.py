"""The token photo: the passport-ready crop of a capture (docs/token.md).

`photo.make_token(still, landmarks, fmt)` levels the eyes, scales and crops the full-resolution
still to a print format's geometry, and cuts the ISO/IEC 19794-5 Token Frontal image beside it;
`render.print_sheet()` lays copies out for a photo lab. Nothing is imported here: the framing
check needs only `geometry`, and `kiosk check` should not pay for rendering and super-resolution.
"""
