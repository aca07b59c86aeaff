"""What an upload spends of the token's request budget (Redivis: about 100 API requests per 100 s), counted
by the emulator, in real Airflow (``dag.test()``).

Outside its wait, a mapped upload costs two API requests (the session and the create): its siblings in
the DAG run answer ``if_exists`` from one listing of the table's upload names and read the table's URL
once. ``if_exists`` still acts before any byte is sent, and a name taken after the listing is never adopted.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.engine.options import infer_upload_type
from tests.airflow.harness import AirflowHome, airflow2_python
from tests.operators.test_upload_retries import (
    CHUNK,
    CONN_EXTRA,
    TABLE,
    TRANSPORTS,
    assert_one_exact_upload,
    run_dag,
    run_dag_per_emulator,
    write_source,
)

if TYPE_CHECKING:
    from redivis_emulator.recording import RecordedRequest

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

FLEET = 10
#: The brief's limit, tighter than Redivis's own so that a run meets it: a 429 is a wait, never a failure.
RATE_LIMIT = (20, 10.0)
BUDGET_EXTRA = {**CONN_EXTRA, "rate_limit_interval": RATE_LIMIT[1]}


def kind(request: RecordedRequest) -> str:
    """What an API request was for, from its method and path."""
    path = request.path.split("/api/v1/tables/", 1)[1]
    last = path.rsplit("/", 1)[-1]
    if request.method == "POST":
        return "create" if path.endswith("/uploads") else "session"
    if request.method == "DELETE":
        return "delete"
    if "/" not in path:
        return "table"  # GET /tables/{t}, for the "Redivis table" button
    if path.endswith("/uploads"):
        return "listing"
    return "poll" if last.isdigit() else "name"  # an upload by its uri (the wait), or by its name


def api_calls(emu: RedivisEmulator) -> Counter[str]:
    """The API requests Redivis counts (``/api/v1``, not refused), by what they were for."""
    return Counter(
        kind(r)
        for r in emu.requests
        if r.origin == "api" and r.path.startswith("/api/v1/tables/") and r.status != 429
    )


def outside_waits(calls: Counter[str]) -> int:
    return sum(n for k, n in calls.items() if k != "poll")


def sources(tmp_path: Path, count: int = FLEET) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir(parents=True)
    return [write_source(folder / f"part{i}.csv", CHUNK + 1000 * i) for i in range(count)]


def seed(emu: RedivisEmulator, name: str) -> None:
    """An upload someone else made, created in the emulator directly (no API request, no session byte; no
    content either, which a name check does not look at)."""
    emu.catalog.create_upload(TABLE, {"name": name, "type": infer_upload_type(name)})


def fleet(
    home: AirflowHome,
    emu: RedivisEmulator,
    files: list[Path],
    *,
    if_exists: str = "fail",
    transport: str = TRANSPORTS[0],
):
    return run_dag(
        home,
        emu,
        operator_kwargs=f"upload_type='stream', if_exists={if_exists!r}",
        mapped_sources=[str(f) for f in files],
        conn_extra=BUDGET_EXTRA,
        transport=transport,
    )


def limited_emulator(data_dir: Path) -> RedivisEmulator:
    """An emulator holding ``TABLE`` that enforces ``RATE_LIMIT`` (to be entered: ``with``, an ExitStack)."""
    return RedivisEmulator(tables=[TABLE], data_dir=data_dir, processing_delay=0.05, rate_limit=RATE_LIMIT)


@pytest.fixture
def limited(tmp_path: Path):
    with limited_emulator(tmp_path / "emulator") as emu:
        yield emu


def test_a_single_upload_costs_its_name_its_session_its_create_and_the_tables_link(tmp_path: Path) -> None:
    """Both transports in one Airflow run: an unmapped upload task each, against an emulator each."""
    with contextlib.ExitStack() as stack:
        cases = []
        for transport in TRANSPORTS:
            emu = stack.enter_context(limited_emulator(tmp_path / f"emulator-{transport}"))
            (source,) = sources(tmp_path / transport, 1)
            cases.append((transport, emu, source))
        result = run_dag_per_emulator(
            AirflowHome(tmp_path / "airflow"),
            [
                (emu, f"source={str(source)!r}, upload_type='stream', transport={transport!r}")
                for transport, emu, source in cases
            ],
            conn_extra=BUDGET_EXTRA,
        )
        assert result.succeeded, result.output[-6000:]
        for transport, emu, source in cases:
            calls = api_calls(emu)
            print(f"a single upload ({transport}): {dict(calls)}")
            # Unmapped, it has no sibling to share with: it asks Redivis about its name, and reads the
            # table's URL.
            assert {k: n for k, n in calls.items() if k != "poll"} == {
                "name": 1,
                "session": 1,
                "create": 1,
                "table": 1,
            }, transport
            assert_one_exact_upload(emu, "part0.csv", source)


def _fleet_costs_two_per_upload(home: AirflowHome, emu: RedivisEmulator, tmp_path: Path) -> None:
    files = sources(tmp_path)
    result = fleet(home, emu, files)
    assert result.succeeded, result.output[-6000:]
    calls = api_calls(emu)
    # Each upload: its session and its create. The run: one listing of the table, one read of its URL.
    assert {k: n for k, n in calls.items() if k != "poll"} == {
        "session": FLEET,
        "create": FLEET,
        "listing": 1,
        "table": 1,
    }
    assert outside_waits(calls) == 2 * FLEET + 2
    print(
        f"{FLEET} mapped uploads: {outside_waits(calls)} API requests outside their waits, {calls['poll']} polls"
    )
    for f in files:
        assert_one_exact_upload(emu, f.name, f)
    # Every upload's "Redivis table" button has the URL Redivis returned.
    table_url = emu.get_table(TABLE)["url"]
    urls = home.query("SELECT map_index, value FROM xcom WHERE key = 'redivis_table_url'")
    assert sorted((i, json.loads(v)) for i, v in urls) == [(i, table_url) for i in range(FLEET)]


def test_ten_mapped_uploads_cost_two_requests_each_outside_their_wait(
    tmp_path: Path, limited: RedivisEmulator
) -> None:
    _fleet_costs_two_per_upload(AirflowHome(tmp_path / "airflow"), limited, tmp_path)


def test_ten_mapped_uploads_cost_two_requests_each_on_airflow2(
    tmp_path: Path, limited: RedivisEmulator
) -> None:
    python = airflow2_python()
    if python is None:
        pytest.skip("set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)")
    _fleet_costs_two_per_upload(AirflowHome(tmp_path / "airflow2", python=python), limited, tmp_path)


SEEDED = ("part2.csv", "part5.csv", "part7.csv")


IF_EXISTS_CASES = [("fail", TRANSPORTS[0]), ("skip", TRANSPORTS[1]), ("replace", TRANSPORTS[0])]


def test_if_exists_acts_before_any_byte_in_a_mapped_fleet(tmp_path: Path) -> None:
    """The three ``if_exists`` in one Airflow run: a mapped fleet each, against an emulator each, with three
    of its ten names already taken by someone else."""
    with contextlib.ExitStack() as stack:
        cases = []
        for if_exists, transport in IF_EXISTS_CASES:
            emu = stack.enter_context(limited_emulator(tmp_path / f"emulator-{if_exists}"))
            for name in SEEDED:
                seed(emu, name)
            theirs = {u["name"]: u["uri"] for u in emu.list_uploads(TABLE)}
            cases.append((if_exists, transport, emu, sources(tmp_path / if_exists), theirs))
        home = AirflowHome(tmp_path / "airflow")
        result = run_dag_per_emulator(
            home,
            [
                (emu, f"upload_type='stream', if_exists={if_exists!r}, transport={transport!r}")
                for if_exists, transport, emu, _, _ in cases
            ],
            mapped_sources=[[str(f) for f in files] for _, _, _, files, _ in cases],
            conn_extra=BUDGET_EXTRA,
        )
        # Only if_exists='fail' fails: the DAG run with it.
        assert not result.succeeded
        for i, (if_exists, _, emu, files, theirs) in enumerate(cases):
            check_if_exists(home, i, if_exists, emu, files, theirs, result.output)


def check_if_exists(
    home: AirflowHome,
    task: int,
    if_exists: str,
    emu: RedivisEmulator,
    files: list[Path],
    theirs: dict[str, str],
    output: str,
) -> None:
    calls = api_calls(emu)
    print(f"if_exists={if_exists!r}, {len(SEEDED)} of {FLEET} names taken: {dict(calls)}")
    states = {
        int(i): str(state)
        for task_id, i, state in home.query("SELECT task_id, map_index, state FROM task_instance")
        if task_id == f"upload_{task}"
    }
    taken = {files.index(f) for f in files if f.name in SEEDED}
    fresh = [f for f in files if f.name not in SEEDED]
    sent = sum(f.stat().st_size for f in (files if if_exists == "replace" else fresh))
    # Bytes went only for the uploads if_exists let through: a refused or skipped one sent none.
    assert emu.bytes_received("session") == sent, if_exists
    # The listing showed the seeded names: only those were asked of Redivis, once each.
    assert calls["name"] == len(SEEDED), if_exists
    assert calls["listing"] == 1, if_exists
    assert calls["table"] == 1, if_exists
    if if_exists == "fail":
        assert {i for i, state in states.items() if state != "success"} == taken, states
        assert {states[i] for i in taken} == {"failed"}, states
        assert output.count("already has an upload named") >= len(SEEDED)
        assert {u["name"]: u["uri"] for u in emu.list_uploads(TABLE) if u["name"] in SEEDED} == theirs
        assert calls["session"] == calls["create"] == len(fresh)
    elif if_exists == "skip":
        assert set(states.values()) == {"success"}, states
        assert {u["name"]: u["uri"] for u in emu.list_uploads(TABLE) if u["name"] in SEEDED} == theirs
        assert calls["session"] == calls["create"] == len(fresh)
    else:
        assert set(states.values()) == {"success"}, states
        assert calls["delete"] == len(SEEDED)
        assert calls["session"] == calls["create"] == FLEET
        for f in files:
            assert_one_exact_upload(emu, f.name, f)
        assert not set(theirs.values()) & {u["uri"] for u in emu.list_uploads(TABLE)}
    for f in fresh:
        assert_one_exact_upload(emu, f.name, f)


def someone_takes(emu: RedivisEmulator, name: str) -> Fault:
    """A fault that never fires: at the run's first session request, right after its listing, someone
    outside the run creates an upload named ``name``."""
    taken: list[str] = []

    def at_the_first_session(request: object) -> bool:
        if not taken:
            taken.append(name)
            seed(emu, name)
        return False

    return Fault(
        "status", status=500, method="POST", path_contains="/resumableUpload", predicate=at_the_first_session
    )


def test_a_name_taken_after_the_listing_is_refused_at_the_create_and_never_adopted(
    tmp_path: Path, limited: RedivisEmulator
) -> None:
    """The documented limit: a listing proves a name absent only when it was taken. Someone outside the run
    takes ``part2.csv`` just after it: that upload sends its bytes, Redivis refuses the create, and the
    other's upload is left as it is."""
    files = sources(tmp_path, 3)
    limited.add_fault(someone_takes(limited, "part2.csv"))
    result = fleet(AirflowHome(tmp_path / "airflow"), limited, files)
    assert not result.succeeded
    assert "already has an upload named 'part2.csv' that this task did not create" in result.output, (
        result.output[-6000:]
    )
    (theirs,) = [u for u in limited.list_uploads(TABLE) if u["name"] == "part2.csv"]
    assert theirs["status"] is None  # the outsider's, untouched: nothing adopted, nothing overwritten
    assert limited.bytes_received("session") == sum(f.stat().st_size for f in files)
    for f in files[:2]:
        assert_one_exact_upload(limited, f.name, f)
    assert api_calls(limited)["listing"] == 1


FIRST_TRY_OF_PART2_FAILS = (
    "pre_execute=lambda context: (_ for _ in ()).throw(RuntimeError('try 1 of part2 fails')) "
    "if context['ti'].map_index == 2 and context['ti'].try_number == 1 else None"
)


def test_a_later_try_asks_about_its_name_whatever_the_runs_listing_says(
    tmp_path: Path, limited: RedivisEmulator
) -> None:
    """part2's first try fails before its check; someone takes part2.csv just after the run's listing. Its
    second try finds that listing fresh, but a try after the first asks Redivis: if_exists='fail' refuses
    before any byte (trusting the listing, it would send its bytes and meet the refusal at the create)."""
    files = sources(tmp_path, 3)
    limited.add_fault(someone_takes(limited, "part2.csv"))
    result = run_dag(
        AirflowHome(tmp_path / "airflow"),
        limited,
        operator_kwargs=f"upload_type='stream', {FIRST_TRY_OF_PART2_FAILS}",
        mapped_sources=[str(f) for f in files],
        between_tries="    pass",
        conn_extra=BUDGET_EXTRA,
    )
    assert not result.succeeded
    assert "try 1 of part2 fails" in result.output
    assert "already has an upload named 'part2.csv'." in result.output, result.output[-6000:]
    assert "that this task did not create" not in result.output
    assert limited.bytes_received("session") == sum(f.stat().st_size for f in files[:2])
    calls = api_calls(limited)
    assert (calls["listing"], calls["name"], calls["session"]) == (1, 1, 2)
    (theirs,) = [u for u in limited.list_uploads(TABLE) if u["name"] == "part2.csv"]
    assert theirs["status"] is None
