"""Issue 14: forensics and the store write run off the loop thread; records carry the office's
fields; a refused store tells the applicant little and the operator everything."""

from __future__ import annotations

import csv
import io
import threading
from typing import Any

from kiosk.cli.store import _csv
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.suite import ForensicSuite
from kiosk.service.state import Accept, Resume, Retake
from tests.test_service_loop import (
    GOOD,
    FakePipeline,
    fake_checks,
    make_config,
    replay,
    started,  # noqa: F401 (fixture)
    state_is,
    wait_for,
)


class SlowCheck:
    """A forensic check that runs until the test lets it finish."""

    key, needs_face = "jpeg", False

    def __init__(self) -> None:
        self.release = threading.Event()
        self.thread = ""

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]:
        self.thread = threading.current_thread().name
        self.release.wait(10)
        return {"score": 0.9, "threshold": 0.5, "flagged": True}


def test_forensics_run_off_the_loop_thread_and_the_loop_stays_live(tmp_path, started):  # noqa: F811
    check = SlowCheck()
    checks = fake_checks(FakePipeline())
    checks = type(checks)(
        checks.pipeline, ForensicSuite([check]), checks.models, checks.bundle, checks.signature
    )
    service = started(make_config(tmp_path), replay([GOOD]), lambda c: checks)
    wait_for(state_is(service, "capture"))
    before = service.snapshot()["loop_age_s"]
    wait_for(lambda: check.thread)
    assert check.thread.startswith("kiosk-capture")
    # While forensics run, the loop turns (heartbeat fresh) and answers commands.
    wait_for(lambda: service.snapshot()["loop_age_s"] < 0.5)
    assert service.request(Accept()).result(5)["accepted"] is False  # not under review yet
    assert service.snapshot()["state"] == "capture" and before < 5
    check.release.set()
    wait_for(state_is(service, "review"))
    assert service.snapshot()["forensics"]["jpeg"]["flagged"] is True


def test_record_carries_case_operator_kiosk_and_retakes_and_export_has_columns(
    tmp_path,
    started,  # noqa: F811
):
    service = started(make_config(tmp_path, kiosk_id="kiosk-3"), replay([GOOD]))
    wait_for(state_is(service, "review"))
    service.request(Retake(reason="expression")).result(5)
    service.request(Resume()).result(5)
    wait_for(state_is(service, "review"))
    office = {"case_ref": "A-2024-17", "operator": "desk 2"}
    result = service.request(Accept(), office=office).result(5)
    assert result["state"] == "done"
    [record] = service.store.list()
    assert record["office"] == {
        "case_ref": "A-2024-17",
        "operator": "desk 2",
        "kiosk_id": "kiosk-3",
        "retakes": ["expression"],
    }
    record["forensics"] = {"jpeg": {"score": 0.9, "threshold": 0.5, "flagged": True}, "ela": {}}
    [columns] = csv.DictReader(io.StringIO(_csv([{**record, "image": "x.jpg"}])))
    assert columns["forensic_jpeg"] == "flagged" and columns["forensic_ela"] == "not run"
    assert columns["case_ref"] == "A-2024-17" and columns["kiosk_id"] == "kiosk-3"
    assert columns["retakes"] == "1" and columns["retake_reasons"] == "expression"


def test_refused_store_short_prompt_operator_details_and_health(tmp_path, started):  # noqa: F811
    service = started(make_config(tmp_path), replay([GOOD]))
    wait_for(state_is(service, "review"))
    service.store.min_free_bytes = 1 << 60  # the disk floor is reached
    service.request(Accept()).result(5)
    snap = service.snapshot()
    assert snap["prompt"] == "The photo could not be saved — the operator will help you"
    assert "min_free_mb" in snap["message"] and "min_free_mb" in snap["store"]["refused"]
    assert snap["store"]["ok"] is False
    assert service.health()[0] == 503


def test_last_capture_is_named_after_a_restart(tmp_path, started):  # noqa: F811
    config = make_config(tmp_path)
    service = started(config, replay([GOOD]))
    wait_for(state_is(service, "review"))
    capture_id = service.request(Accept()).result(5)["capture_id"]
    service.stop()
    again = started(config, replay([GOOD]))
    assert again.snapshot()["last_capture_id"] == capture_id
