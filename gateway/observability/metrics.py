"""Prometheus metrics of one gateway replica, in a registry of its own (so apps built side by side
in one process, as the tests do, never share counters).

Names and labels follow deploy/metrics.json, the contract with the dashboards. Every label value
comes from a bounded set: routes are the app's route templates, models are those the catalog
resolved (anything else is `unknown`), statuses are HTTP codes, error types are OpenAI's.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gateway.observability import multiprocess

# Latency buckets from 5 ms to 10 min: the gateway's own answers are milliseconds, streams minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5)
_QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "requests",
        "tokens",
        "insufficient_quota",
        "server_error",
    }
)
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}


class GatewayMetrics:
    """Every metric the gateway exports, created once per app and handed to whoever records."""

    content_type = CONTENT_TYPE_LATEST

    # Long: the registry declares every metric of deploy/metrics.json, one statement each.
    def __init__(
        self, registry: CollectorRegistry | None = None, *, multiprocess_dir: str | None = None
    ) -> None:
        """`multiprocess_dir`: this process is one of a host's workers (gateway/workers.py), and
        /metrics renders all of them from that directory (gateway/observability/multiprocess.py)."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._multiprocess_dir = multiprocess_dir
        r = self.registry
        self.requests = Counter(
            "tantra_requests_total",
            "Requests answered, by route, model, HTTP status and OpenAI error type (empty on success).",
            ["route", "model", "status", "error_type"],
            registry=r,
        )
        self.duration = Histogram(
            "tantra_request_duration_seconds",
            "Time from a request's arrival to the last byte of its response (the end of the stream).",
            ["route", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "tantra_time_to_first_token_seconds",
            "Streamed requests: time from arrival to the first chunk of the stream.",
            ["route", "model"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "tantra_inter_token_latency_seconds",
            "Streamed requests: time between consecutive chunks of the stream.",
            ["route", "model"],
            buckets=_ITL_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "tantra_queue_time_seconds",
            "Time from a request's arrival until it is sent upstream (auth, limits, validation, pool).",
            ["route"],
            buckets=_QUEUE_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tantra_tokens_total",
            "Tokens served, from each response's usage; kind is prompt or completion; served_model is "
            "the model that answered (a fallback of model).",
            ["model", "served_model", "kind"],
            registry=r,
        )
        self.in_flight = Gauge(
            "tantra_requests_in_flight",
            "Requests being served now by this replica.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ratelimit_rejections = Counter(
            "tantra_ratelimit_rejections_total",
            "Requests refused by a limit: limit is rpm, tpm, concurrency, budget, rejections (the "
            "rejection budget), auth_failures or realtime_sessions; scope key, tenant, address (or "
            "replica, for realtime sessions).",
            ["limit", "scope"],
            registry=r,
        )
        self.auth_failures = Counter(
            "tantra_auth_failures_total",
            "Unknown API keys presented (outcome unknown_key, a 401) and lookups refused to an address "
            "that presented too many (outcome throttled, a 429 without a database query).",
            ["outcome"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "tantra_upstream_retries_total", "Requests sent again to an upstream.", ["upstream"], registry=r
        )
        self.upstream_failovers = Counter(
            "tantra_upstream_failovers_total",
            "Requests moved from this upstream to another one.",
            ["upstream"],
            registry=r,
        )
        self.requests_waiting = Gauge(
            "tantra_requests_waiting",
            "Requests held for an engine of their model to come up (scale to zero's cold start, "
            "TANTRA_COLD_START_WAIT_S): what autoscaling's activation trigger reads.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.circuit_state = Gauge(
            "tantra_upstream_circuit_state",
            "Each upstream's circuit breaker: 0 closed (serving), 1 half-open (probing), 2 open.",
            ["upstream"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.upstream_healthy = Gauge(
            "tantra_upstream_healthy",
            "1 when the upstream's last deep health check generated a token in time, else 0.",
            ["upstream"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.engines_ready = Gauge(
            "tantra_engines_ready",
            "1 when a healthy upstream serves the default model (what /readyz?engines=1 requires), else 0; "
            "the gateway's own readiness (/readyz) does not depend on it.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.health_check_duration = Histogram(
            "tantra_health_check_duration_seconds",
            "Time a deep health check took (one generated token), per upstream.",
            ["upstream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ledger_set_aside = Counter(
            "tantra_ledger_set_aside_total",
            "Ledger rows the database refused, kept in usage_dead_letter instead of blocking the rest.",
            registry=r,
        )
        self.config_reloads = Counter(
            "tantra_config_reloads_total",
            "Configuration reloads, by result: applied or rejected.",
            ["result"],
            registry=r,
        )

        # Self-monitoring (docs/orchestration.md "Self-monitoring"): each eval set's latest score and
        # whether its model's latest version scored worse than the last one by more than the margin.
        self.eval_score = Gauge(
            "tantra_eval_score",
            "The latest score (0..1) of an eval set against its model's served version.",
            ["set", "model"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.eval_regression = Gauge(
            "tantra_eval_regression",
            "1 while an eval set's latest run scored a new model version worse than the last version "
            "by more than the margin (the alert), else 0.",
            ["set", "model"],
            registry=r,
            multiprocess_mode="mostrecent",
        )

    def render(self) -> bytes:
        if self._multiprocess_dir is not None:
            return multiprocess.render(self._multiprocess_dir)
        return generate_latest(self.registry)

    def request_done(self, route: str, model: str, status: int, error_type: str, seconds: float) -> None:
        if error_type and error_type not in ERROR_TYPES:
            error_type = "other"
        self.requests.labels(route, model, str(status), error_type).inc()
        self.duration.labels(route, model).observe(seconds)

    def count_tokens(self, model: str, served_model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens.labels(model, served_model, "prompt").inc(prompt)
        if completion:
            self.tokens.labels(model, served_model, "completion").inc(completion)

    def rejected(self, limit: str, scope: str) -> None:
        self.ratelimit_rejections.labels(limit, scope).inc()

    def set_circuit(self, upstream: str, state: str) -> None:
        self.circuit_state.labels(upstream).set(CIRCUIT_STATES[state])

    def forget_upstream(self, upstream: str) -> None:
        """Drop a departed upstream's gauges (a discovered pod that left), so that /metrics lists the
        members there are; its counters stay, as counters of a finished process do in Prometheus."""
        for gauge in (self.circuit_state, self.upstream_healthy):
            with contextlib.suppress(KeyError):
                gauge.remove(upstream)
