"""Settings: read once from the environment, checked, frozen, passed down.

Every setting is declared once in ``SPECS`` (name, default, meaning, parser);
``Settings.from_env`` builds the frozen object, ``describe_settings`` renders
the table that the README and ``--help`` show. Extra Kafka client properties
come from ``KAFKA_CONFIG_*`` variables and pass through untouched; only values
of properties on an allow-list of harmless ones are ever printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dataflow.errors import SettingsError

KAFKA_CONFIG_PREFIX = "KAFKA_CONFIG_"
# Properties the project sets from its own variables; overriding them through
# KAFKA_CONFIG_* would make two sources of truth.
_RESERVED_KAFKA_PROPERTIES = frozenset({"bootstrap.servers"})
# KAFKA_CONFIG_* properties whose values are printed (start-up line, repr). Every
# other value is masked: an allow-list, because librdkafka keeps adding properties
# that hold secrets (keys, passphrases, tokens, JAAS-like configs) under new names.
SHOWN_KAFKA_PROPERTIES = frozenset({
    # who and how we connect (no credentials)
    "client.id", "client.rack", "security.protocol", "sasl.mechanism", "sasl.mechanisms",
    "sasl.oauthbearer.method", "sasl.kerberos.service.name",
    "ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification",
    "ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.crl.location",
    "ssl.cipher.suites", "ssl.curves.list", "ssl.sigalgs.list",
    "broker.address.family", "client.dns.lookup", "api.version.request",
    "broker.version.fallback",
    # producer tuning
    "acks", "request.required.acks", "enable.idempotence", "compression.type",
    "compression.codec", "compression.level", "linger.ms", "queue.buffering.max.ms",
    "batch.num.messages", "batch.size", "message.max.bytes", "receive.message.max.bytes",
    "max.in.flight.requests.per.connection", "max.in.flight", "retries",
    "message.send.max.retries", "retry.backoff.ms", "retry.backoff.max.ms",
    "queue.buffering.max.messages", "queue.buffering.max.kbytes", "sticky.partitioning.linger.ms",
    # consumer tuning
    "fetch.min.bytes", "fetch.max.bytes", "fetch.wait.max.ms", "max.partition.fetch.bytes",
    "fetch.message.max.bytes", "fetch.error.backoff.ms", "queued.min.messages",
    "isolation.level", "check.crcs",
    # timeouts and intervals
    "socket.timeout.ms", "socket.connection.setup.timeout.ms", "socket.keepalive.enable",
    "request.timeout.ms", "message.timeout.ms", "session.timeout.ms",
    "heartbeat.interval.ms", "max.poll.interval.ms", "metadata.max.age.ms",
    "topic.metadata.refresh.interval.ms", "reconnect.backoff.ms", "reconnect.backoff.max.ms",
    "connections.max.idle.ms", "api.version.request.timeout.ms", "statistics.interval.ms",
    # diagnostics
    "debug", "log.connection.close",
})
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# librdkafka's consume() refuses to return more messages than this in one call.
MAX_SOURCE_BATCH_SIZE = 1_000_000
OUTPUT_TOPIC_VARS = (("OUTPUT_TOPIC", "output_topic"), ("DLQ_TOPIC", "dlq_topic"),
                     ("COUNTS_TOPIC", "counts_topic"), ("LATE_TOPIC", "late_topic"))
COUNTABLE_FIELDS = ("device_type", "locale", "app_version", "ip_version", "user_id", "device_id")
# Variables read by `python -m bytewax.run` itself, not by this package.
BYTEWAX_ENV_VARS = frozenset(
    {
        "BYTEWAX_PROCESS_ID",
        "BYTEWAX_ADDRESSES",
        "BYTEWAX_HOSTFILE_PATH",
        "BYTEWAX_WORKERS_PER_PROCESS",
        "BYTEWAX_RECOVERY_DIRECTORY",
        "BYTEWAX_SNAPSHOT_INTERVAL",
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL",
        "BYTEWAX_DATAFLOW_API_ENABLED",
        "BYTEWAX_DATAFLOW_API_PORT",
        "BYTEWAX_DATAFLOW_API_CACHE_PATH",
    }
)


def _text(raw: str) -> str:
    if not raw.strip():
        msg = "must not be empty"
        raise ValueError(msg)
    return raw.strip()


def _topic(raw: str) -> str:
    if not _TOPIC_RE.match(raw):
        msg = f"{raw!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-')"
        raise ValueError(msg)
    return raw


def _optional_topic(raw: str) -> str:
    return _topic(raw) if raw.strip() else ""


def _bootstrap(raw: str) -> str:
    hosts = [h.strip() for h in raw.split(",") if h.strip()]
    if not hosts:
        msg = "must list at least one host:port"
        raise ValueError(msg)
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"{host!r} is not host:port"
            raise ValueError(msg)
    return ",".join(hosts)


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            msg = f"{raw!r} is not a whole number"
            raise ValueError(msg) from None
        if value < low:
            msg = f"{value} is below the minimum of {low}"
            raise ValueError(msg)
        return value

    return parse


def _int_between(low: int, high: int, why: str) -> Callable[[str], int]:
    at_least = _int_at_least(low)

    def parse(raw: str) -> int:
        value = at_least(raw)
        if value > high:
            msg = f"{value} is above the maximum of {high:,} ({why})"
            raise ValueError(msg)
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    msg = f"{raw!r} is not a boolean (true/false)"
    raise ValueError(msg)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        lowered = raw.strip().lower()
        if lowered not in allowed:
            msg = f"{raw!r} is not one of {', '.join(allowed)}"
            raise ValueError(msg)
        return lowered

    return parse


def _locales(raw: str) -> frozenset[str]:
    return frozenset(part.strip().upper() for part in raw.split(",") if part.strip())


def _count_fields(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    unknown = [n for n in names if n not in COUNTABLE_FIELDS]
    if unknown:
        msg = f"unknown field(s) {', '.join(unknown)}; choose from {', '.join(COUNTABLE_FIELDS)}"
        raise ValueError(msg)
    if not names:
        msg = "must name at least one field"
        raise ValueError(msg)
    return names


def _optional_address(raw: str) -> str:
    if not raw.strip():
        return ""
    host, _, port = raw.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        msg = f"{raw!r} is not host:port (e.g. 127.0.0.1:9100), or empty for off"
        raise ValueError(msg)
    return raw.strip()


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw.strip() else None


MAX_PROGRESS_SECONDS = 86_400


def _seconds_or_auto(raw: str) -> int | None:
    """``auto`` (None: the job picks by log format), or whole seconds, 0 for off."""
    if raw.strip().lower() in {"auto", ""}:
        return None
    return _int_between(0, MAX_PROGRESS_SECONDS, "a day")(raw.strip())


@dataclass(frozen=True, slots=True)
class Spec:
    """One environment variable: its name, default, meaning and parser."""

    env: str
    attr: str
    default: str
    help: str
    parse: Callable[[str], Any]


SPECS: tuple[Spec, ...] = (
    Spec("KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers", "localhost:9092",
         "Kafka brokers, comma-separated host:port.", _bootstrap),
    Spec("INPUT_TOPIC", "input_topic", "user-login", "Topic of raw login events.", _topic),
    Spec("OUTPUT_TOPIC", "output_topic", "processed-user-login",
         "Topic of processed (enriched) login events, keyed by user_id.", _topic),
    Spec("DLQ_TOPIC", "dlq_topic", "user-login-dlq",
         "Dead-letter topic: rejected records, original bytes, dlq.* headers.", _topic),
    Spec("COUNTS_TOPIC", "counts_topic", "user-login-counts",
         "Topic of window login counts per field and value (final, or provisional at the "
         "end of a finite run).", _topic),
    Spec("LATE_TOPIC", "late_topic", "user-login-late",
         "Topic of late logins: too old for their partition to count (counted, not lost).",
         _topic),
    Spec("WINDOW_SECONDS", "window_seconds", "60",
         "Length of the event-time tumbling windows, in seconds.", _int_at_least(1)),
    Spec("ALLOWED_LATENESS_SECONDS", "allowed_lateness_seconds", "10",
         "How much older than the newest event of its partition an event may be and still "
         "be counted (else it is late).",
         _int_at_least(0)),
    Spec("IDLE_PARTITION_SECONDS", "idle_partition_seconds", "15",
         "A partition caught up with its log end and quiet this long stops holding windows "
         "back, until its next event.", _int_at_least(1)),
    Spec("MAX_FUTURE_SECONDS", "max_future_seconds", "300",
         "Events stamped further ahead of the job's clock are dead-lettered "
         "(future_timestamp).", _int_at_least(0)),
    Spec("EXCLUDED_LOCALES", "excluded_locales", "",
         "Comma-separated locales dropped on purpose (counted as filtered), e.g. RU,BY.",
         _locales),
    Spec("COUNT_FIELDS", "count_fields", "device_type,locale",
         f"Fields to count logins by, from: {', '.join(COUNTABLE_FIELDS)}.", _count_fields),
    Spec("STOP_AT_END", "stop_at_end", "false",
         "Stop once everything that was in the input topic at start-up is processed.", _bool),
    Spec("STARTING_OFFSET", "starting_offset", "earliest",
         "Where to start without recovery state: earliest (safe, re-reads), latest, or "
         "committed (CONSUMER_GROUP's offsets, earliest where none).",
         _choice("earliest", "latest", "committed")),
    Spec("CONSUMER_GROUP", "consumer_group", "login-dataflow",
         "Consumer group the job commits its fully written input positions to (for lag "
         "tools and STARTING_OFFSET=committed).", _text),
    Spec("SOURCE_BATCH_SIZE", "source_batch_size", "2000",
         "Records read from one partition per poll (at most 1,000,000).",
         _int_between(1, MAX_SOURCE_BATCH_SIZE, "librdkafka's consume() limit")),
    Spec("CONSUMER_QUEUE_KBYTES", "consumer_queue_kbytes", "1024",
         "librdkafka prefetch bound per partition (queued.max.messages.kbytes).",
         _int_at_least(1)),
    Spec("PROCESSING_GUARANTEE", "processing_guarantee", "at-least-once",
         "at-least-once (a crash writes the records read since the last epoch again) or "
         "exactly-once (Kafka transactions: consumers reading with "
         "isolation.level=read_committed see every output once; docs/exactly-once.md).",
         _choice("at-least-once", "exactly-once")),
    Spec("STATE_TOPIC", "state_topic", "",
         "Exactly-once only: compacted topic of the window shards' state, created by the job "
         "if missing; empty: <CONSUMER_GROUP>-window-state.", _optional_topic),
    Spec("DELIVERY_TIMEOUT_MS", "delivery_timeout_ms", "120000",
         "How long a write may be retried before the job stops (delivery.timeout.ms).",
         _int_at_least(1000)),
    Spec("RUN_SUMMARY_DIR", "run_summary_dir", "",
         "If set, each process writes its final counters as JSON here at exit.",
         _optional_path),
    Spec("METRICS_ADDRESS", "metrics_address", "",
         "host:port of this job's own Prometheus endpoint (process K listens on port+K); "
         "empty: off. Bytewax's BYTEWAX_DATAFLOW_API_ENABLED endpoint binds all interfaces.",
         _optional_address),
    Spec("PROGRESS_SECONDS", "progress_seconds", "auto",
         "Seconds between the progress lines each process logs (records read and processed, "
         "dead letters, lag, windows; the fraction done in a STOP_AT_END run, with a progress "
         "bar on a terminal); 0: off; auto: 10 on a console, 60 with JSON logs.",
         _seconds_or_auto),
    Spec("LOG_LEVEL", "log_level", "info", "debug, info, warning or error.",
         _choice("debug", "info", "warning", "error")),
    Spec("LOG_FORMAT", "log_format", "auto",
         "json, console, or auto (console on a terminal, JSON otherwise).",
         _choice("auto", "json", "console")),
)

ENV_VARS = frozenset(spec.env for spec in SPECS)


def is_secret(prop: str) -> bool:
    """Whether a Kafka client property's value must be masked: all but the allow-list."""
    return prop.lower() not in SHOWN_KAFKA_PROPERTIES


def _kafka_config(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    config: dict[str, str] = {}
    errors: list[str] = []
    for name, value in environ.items():
        if not name.startswith(KAFKA_CONFIG_PREFIX) or name == KAFKA_CONFIG_PREFIX:
            continue
        prop = name.removeprefix(KAFKA_CONFIG_PREFIX).lower().replace("_", ".")
        if prop in _RESERVED_KAFKA_PROPERTIES:
            errors.append(f"{name}: set KAFKA_BOOTSTRAP_SERVERS instead")
            continue
        config[prop] = value
    return config, errors


def _topic_clashes(values: Mapping[str, Any]) -> list[str]:
    """The input topic differs from every output topic, and the output topics from each other."""
    errors = []
    outputs = [(env, values.get(attr)) for env, attr in OUTPUT_TOPIC_VARS]
    if values.get("input_topic") in [topic for _, topic in outputs]:
        errors.append("INPUT_TOPIC: must differ from the output, dead-letter, counts "
                      "and late topics (the job would read its own output)")
    for index, (env, topic) in enumerate(outputs):
        earlier = [e for e, t in outputs[:index] if t is not None and t == topic]
        if earlier:
            errors.append(f"{env}: must differ from {earlier[0]} (both {topic!r}); each kind "
                          "of output needs its own topic")
    return errors


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of the job; build with ``from_env`` or directly in tests."""

    bootstrap_servers: str = "localhost:9092"
    input_topic: str = "user-login"
    output_topic: str = "processed-user-login"
    dlq_topic: str = "user-login-dlq"
    counts_topic: str = "user-login-counts"
    late_topic: str = "user-login-late"
    window_seconds: int = 60
    allowed_lateness_seconds: int = 10
    idle_partition_seconds: int = 15
    max_future_seconds: int = 300
    excluded_locales: frozenset[str] = frozenset()
    count_fields: tuple[str, ...] = ("device_type", "locale")
    stop_at_end: bool = False
    starting_offset: str = "earliest"
    consumer_group: str = "login-dataflow"
    source_batch_size: int = 2000
    consumer_queue_kbytes: int = 1024
    processing_guarantee: str = "at-least-once"
    state_topic: str = ""
    delivery_timeout_ms: int = 120_000
    run_summary_dir: Path | None = None
    metrics_address: str = ""
    progress_seconds: int | None = None  # None: auto (dataflow.progress.interval_seconds)
    log_level: str = "info"
    log_format: str = "auto"
    kafka_config: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and check every setting; raise SettingsError naming each bad variable."""
        values: dict[str, Any] = {}
        errors: list[str] = []
        for spec in SPECS:
            raw = environ.get(spec.env, spec.default)
            try:
                values[spec.attr] = spec.parse(raw)
            except ValueError as exc:
                errors.append(f"{spec.env}: {exc}")
        kafka_config, kafka_errors = _kafka_config(environ)
        errors.extend(kafka_errors)
        errors.extend(_topic_clashes(values))
        if errors:
            raise SettingsError("; ".join(errors))
        return cls(kafka_config=kafka_config, **values)

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly-once"

    @property
    def window_state_topic(self) -> str:
        """STATE_TOPIC, or one named after CONSUMER_GROUP (characters a topic name cannot
        hold become '_')."""
        return self.state_topic or re.sub(r"[^A-Za-z0-9._-]", "_",
                                          f"{self.consumer_group}-window-state")[:249]

    def describe(self) -> dict[str, Any]:
        """The settings as a printable mapping, secrets masked."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kafka_config":
                value = {k: ("***" if is_secret(k) else v) for k, v in value.items()}
            elif isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[f.name] = value
        return shown

    def __repr__(self) -> str:
        return f"Settings({self.describe()!r})"


def describe_settings() -> str:
    """The settings table shown by ``--help`` (the README carries the same table)."""
    rows = [f"  {spec.env:<26} default {spec.default!r:<24} {spec.help}" for spec in SPECS]
    rows.append(f"  {KAFKA_CONFIG_PREFIX + '<PROPERTY>':<26} {'':<32} Any librdkafka property, "
                "e.g. KAFKA_CONFIG_SECURITY_PROTOCOL=SASL_SSL -> security.protocol; "
                "values are printed masked (***) unless the property is a known harmless "
                "one (security.protocol, sasl.mechanism, client.id, timeouts, tuning).")
    return "\n".join(rows)
