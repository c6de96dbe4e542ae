"""Resolution: the distance between the eye centres in the final still must be at least 90 px
(ISO/IEC 19794-5 full frontal image; ICAO Doc 9303 part 3).

The checks run on a preview or a working copy; `Analysis.still_scale` says how many still pixels
one analysed pixel spans, so the distance is judged in the photo that will be stored.
"""

from __future__ import annotations

from kiosk.contract.reasons import LOW_RESOLUTION
from kiosk.runtime.checks.base import CheckResult, MeasureCheck
from kiosk.runtime.checks.geometry import eye_distance
from kiosk.runtime.vision.analysis import Analysis


class Resolution(MeasureCheck):
    name = "resolution"
    reason = LOW_RESOLUTION
    bound = "min"
    limit_key = "min_eye_distance_px"

    def measure(self, analysis: Analysis) -> CheckResult:
        analysed = eye_distance(analysis)
        still = analysed * analysis.still_scale
        return self.result(still, details={"eye_distance_analysed_px": analysed})
