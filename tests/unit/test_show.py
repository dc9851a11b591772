"""The output viewer's renderers on records shaped like the job's counts, late and processed."""

from __future__ import annotations

import json

from dataflow.show import read_windows, render_counts, render_late, render_processed


def count(start: str, field: str, value: str, n: int, final: bool | None = True,
          end: str | None = None) -> bytes:
    """A COUNTS_TOPIC value; final=None leaves the flag out."""
    doc: dict[str, object] = {"window_start": f"2023-09-12T{start}:00+00:00",
                              "window_end": f"2023-09-12T{end or start[:3] + '01'}:00+00:00",
                              "field": field, "value": value, "count": n}
    if final is not None:
        doc["final"] = final
    return json.dumps(doc).encode()


def test_counts_table_has_a_row_per_window_a_column_per_value_and_the_final_flag() -> None:
    """Later records of a window and value replace earlier ones; final is yes/no per window."""
    rows, bad = read_windows([
        count("00:45", "device_type", "android", 3, final=False, end="00:46"),
        count("00:45", "device_type", "iOS", 2, end="00:46"),
        count("00:45", "device_type", "android", 5, end="00:46"),
        count("00:46", "device_type", "android", 1, final=False, end="00:47"),
        count("00:45", "locale", "DE", 4, end="00:46"),
        b"not json", None,
    ])
    assert bad == 2
    assert render_counts(rows).splitlines() == [
        "logins per window by device_type (2 windows)",
        "window (UTC)                  android  iOS  total  final",
        "2023-09-12 00:45:00-00:46:00        5    2      7    yes",
        "2023-09-12 00:46:00-00:47:00        1    .      1     no",
        "",
        "logins per window by locale (1 window)",
        "window (UTC)                  DE  total  final",
        "2023-09-12 00:45:00-00:46:00   4      4    yes",
        "",
        "final: yes = the watermark passed the window's end, its counts will not change; "
        "no = provisional (the run ended first); - = not given",
    ]


def test_counts_beyond_ten_values_go_to_others_and_old_windows_are_cut() -> None:
    """Eleven values: the rarest goes under (others); a window limit keeps the last windows."""
    values = [count("00:45", "locale", f"L{i:02}", 20 - i, final=None, end="00:46")
              for i in range(11)]
    values += [count("00:46", "locale", "L00", 1, final=None, end="00:47")]
    rows, _ = read_windows(values)
    lines = render_counts(rows, windows=1).splitlines()
    assert lines[0] == "logins per window by locale (2 windows, last 1 of 2)"
    assert lines[1].split()[-4:] == ["L09", "(others)", "total", "final"]
    assert lines[2].split()[-4:] == [".", "0", "1", "-"]


def test_late_records_are_a_table_with_totals() -> None:
    """Late records: a row per window, field and value (records summed), sorted by window;
    a late login counts once per field, so the total is the largest field's."""
    rows, _ = read_windows([count("00:47", "locale", "US", 2, final=None, end="00:48"),
                            count("00:45", "device_type", "iOS", 1, final=None, end="00:46"),
                            count("00:47", "locale", "US", 3, final=None, end="00:48")])
    assert render_late(rows).splitlines() == [
        "3 late records, 5 late logins",
        "window (UTC)                  field        value  late logins",
        "2023-09-12 00:45:00-00:46:00  device_type  iOS              1",
        "2023-09-12 00:47:00-00:48:00  locale       US               5",
    ]
    assert render_late([]) == "no late records"


def test_processed_records_print_as_json() -> None:
    """A processed record prints as indented JSON; a non-JSON value is shown escaped."""
    text = render_processed([b'{"user_id": "u", "ip_version": 4}', b"\xff"])
    assert text.splitlines() == ["{", '  "user_id": "u",', '  "ip_version": 4', "}",
                                 "(not JSON) \\xff"]
