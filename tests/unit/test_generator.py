"""The event generator without a broker: content, shares, timestamps, options."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from dataflow.generator import EXPECTED_REASONS, EventFactory, GeneratorError, Shares, TimeShape
from dataflow.generator.cli import build_parser, format_summary, main, options_from_args
from dataflow.generator.events import LOCALES, uuid4_text
from dataflow.generator.producing import MAX_BURST, GeneratorOptions, GeneratorSummary, _due
from dataflow.parsing import parse
from dataflow.schemas import Accepted, Rejected
from tests.records import FakeRecord

START = 1_700_000_000
ALL = Shares(missing_field=0.05, wrong_type=0.04, malformed=0.03, out_of_order=0.06, late=0.02,
             excluded_locale=0.05)


def _parsed(value: bytes) -> Accepted | Rejected:
    return parse(FakeRecord(value))


def test_same_seed_and_start_time_give_identical_events() -> None:
    """Two factories with one seed and start time yield the same keys, values and kinds."""
    first = EventFactory(7, ALL, START, rate=100).take(2000)
    second = EventFactory(7, ALL, START, rate=100).take(2000)
    assert first == second


def test_different_seeds_give_different_events() -> None:
    """Another seed changes the content."""
    assert EventFactory(1, Shares(), START).take(50) != EventFactory(2, Shares(), START).take(50)


def test_same_seed_without_start_time_differs_only_in_timestamps() -> None:
    """Without --start-time only the wall-clock timestamp may differ between runs."""
    one = EventFactory(3, ALL, None).take(300)
    two = EventFactory(3, ALL, START).take(300)
    assert [k for k, _, _ in one] == [k for k, _, _ in two]
    assert [kind for _, _, kind in one] == [kind for _, _, kind in two]
    normal = [(a, b) for (_, a, kind), (_, b, _) in zip(one, two, strict=True) if kind == "normal"]
    now = int(time.time())
    for a, b in normal:
        got_a, got_b = _parsed(a), _parsed(b)
        assert isinstance(got_a, Accepted) and isinstance(got_b, Accepted)
        assert abs(got_a.timestamp - now) <= 5
        assert got_a.login.user_id == got_b.login.user_id
        assert got_a.login.ip == got_b.login.ip


def test_timestamps_follow_start_time_and_rate() -> None:
    """Event i is stamped start_time + i/rate (whole seconds); rate 0 stamps all at start."""
    paced = [_parsed(v) for _, v, _ in EventFactory(1, Shares(), START, rate=4).take(12)]
    assert [p.timestamp for p in paced if isinstance(p, Accepted)] == [
        START + i // 4 for i in range(12)
    ]
    thirds = [_parsed(v) for _, v, _ in EventFactory(1, Shares(), START, rate=3).take(9)]
    assert [p.timestamp for p in thirds if isinstance(p, Accepted)] == [
        START + i // 3 for i in range(9)
    ]
    unpaced = [_parsed(v) for _, v, _ in EventFactory(1, Shares(), START, rate=0).take(5)]
    assert {p.timestamp for p in unpaced if isinstance(p, Accepted)} == {START}


def test_shares_of_each_kind_are_within_tolerance() -> None:
    """On 20,000 events each kind's share is within 0.6 points of what was asked."""
    kinds = Counter(kind for _, _, kind in EventFactory(11, ALL, START).take(20_000))
    for name in ("missing_field", "wrong_type", "malformed", "out_of_order", "late",
                 "excluded_locale"):
        assert abs(kinds[name] / 20_000 - getattr(ALL, name)) < 0.006, (name, kinds)
    assert abs(kinds["normal"] / 20_000 - (1 - ALL.total())) < 0.01


def test_bad_kinds_are_rejected_with_their_reason_and_others_accepted() -> None:
    """parse rejects missing_field/wrong_type/malformed with that reason, accepts the rest."""
    seen: Counter[str] = Counter()
    for _, value, kind in EventFactory(5, ALL, START).take(5000):
        result = _parsed(value)
        if kind in EXPECTED_REASONS:
            assert isinstance(result, Rejected), (kind, value)
            assert result.reason == EXPECTED_REASONS[kind], (kind, value, result.detail)
        else:
            assert isinstance(result, Accepted), (kind, value)
        seen[kind] += 1
    assert len(seen) == 7


def test_times_of_out_of_order_and_late_events() -> None:
    """Out-of-order stays within the lateness; late is beyond a window plus the lateness."""
    shape = TimeShape(window_seconds=60, lateness_seconds=10)
    shares = Shares(out_of_order=0.5, late=0.5)
    for _, value, kind in EventFactory(2, shares, START, time_shape=shape).take(2000):
        result = _parsed(value)
        assert isinstance(result, Accepted)
        delay = START - result.timestamp
        if kind == "out_of_order":
            assert 1 <= delay < 10
        else:
            assert delay > 70 and delay % 60 == 10


def test_locales_excluded_only_for_the_excluded_kind() -> None:
    """Excluded-locale events use the excluded set; other events never do."""
    factory = EventFactory(4, Shares(excluded_locale=0.2), START, excluded_locales=("BY", "KZ"))
    for _, value, kind in factory.take(3000):
        result = _parsed(value)
        assert isinstance(result, Accepted)
        if kind == "excluded_locale":
            assert result.login.locale in {"BY", "KZ"}
        else:
            assert result.login.locale in LOCALES and result.login.locale not in {"BY", "KZ"}


def test_normal_events_look_like_the_reference_generator() -> None:
    """Key = user_id, uuid4 ids, about 5% without device_type, some IPv6, versions like 2.3.0."""
    events = EventFactory(9, Shares(), START).take(20_000)
    devices: Counter[str | None] = Counter()
    ip_versions: Counter[int] = Counter()
    for key, value, _ in events:
        result = _parsed(value)
        assert isinstance(result, Accepted)
        login = result.login
        assert key == login.user_id.encode()
        assert uuid.UUID(login.user_id).version == 4 and uuid.UUID(login.device_id).version == 4
        assert login.app_version.count(".") == 2
        devices[login.device_type] += 1
        ip_versions[result.ip_version] += 1
    assert set(devices) == {"android", "iOS", None}
    assert abs(devices[None] / 20_000 - 0.05) < 0.006
    assert abs(ip_versions[6] / 20_000 - 0.05) < 0.006


def test_uuid4_text_matches_the_uuid_module() -> None:
    """uuid4_text(bits) equals str(uuid.UUID(int=bits, version=4))."""
    for bits in (0, (1 << 128) - 1, 0x0123456789ABCDEF0123456789ABCDEF, 12345):
        assert uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ({"late": 1.5}, "share of late must be between 0 and 1, got 1.5"),
        ({"malformed": 0.6, "late": 0.6}, "shares add up to 1.2, more than 1"),
    ],
)
def test_invalid_shares_are_refused(shares: dict[str, float], message: str) -> None:
    """Shares outside 0..1 or adding up to more than 1 raise GeneratorError."""
    with pytest.raises(GeneratorError, match=message.replace(".", r"\.")):
        Shares(**shares)


def test_cli_options_map_to_generator_options() -> None:
    """Every documented option reaches GeneratorOptions."""
    args = build_parser().parse_args(
        ["--rate", "0", "--count", "10", "--seed", "3", "--start-time", "1700000000",
         "--partitions", "6", "--missing-field", "0.1", "--wrong-type", "0.2", "--malformed",
         "0.05", "--out-of-order", "0.01", "--late", "0.02", "--excluded-locale", "0.03"])
    options = options_from_args(args)
    assert options == GeneratorOptions(
        rate=0.0, count=10, seed=3, start_time=1_700_000_000.0, partitions=6,
        shares=Shares(0.1, 0.2, 0.05, 0.01, 0.02, 0.03))


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--rate", "-1"], "argument --rate: '-1' is below 0"),
        (["--count", "many"], "argument --count: 'many' is not a whole number"),
        (["--late", "1.5"], "argument --late: '1.5' is not a share between 0 and 1"),
        (["--partitions", "0"], "argument --partitions: '0' is below 1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_give_one_line_errors(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option exits 2 with exactly one error line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"python -m dataflow generate: error: {error}\n"


def test_shares_adding_up_past_one_give_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Shares that together exceed 1 are refused with one line and exit status 1."""
    assert main(["--malformed", "0.7", "--late", "0.7"]) == 1
    assert capsys.readouterr().err == (
        "python -m dataflow generate: error: shares add up to 1.4, more than 1\n")


def test_pacing_sends_what_is_due_in_small_bursts() -> None:
    """At rate 0 a full burst is due; at a rate only the events due by now, capped by count."""
    start = time.perf_counter()
    assert _due(0, start, GeneratorOptions(rate=0)) == (MAX_BURST, 0.0)
    assert _due(0, start, GeneratorOptions(rate=0, count=3)) == (3, 0.0)
    due, wait = _due(0, start - 0.01, GeneratorOptions(rate=1000))
    assert 10 <= due <= 12 and wait == 0.0
    due, wait = _due(5, start, GeneratorOptions(rate=100))
    assert due == 0 and 0 < wait <= 0.001


def test_summary_names_sent_failed_and_kinds() -> None:
    """The final summary shows sent, failed and counts by kind."""
    summary = GeneratorSummary("user-login", sent=9, failed=1,
                               by_kind=Counter({"normal": 8, "late": 2}), elapsed=2.0)
    assert format_summary(summary) == (
        "generate: 9 sent to user-login, 1 failed, in 2.00s (5 events/s)\n"
        "generate: by kind: late 2, normal 8")
