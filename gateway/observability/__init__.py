"""Observability and operations: logs, metrics, traces, health, profiling (telemetry only; live
configuration is gateway.settings').

Everything here is built by the app factory from the settings and handed to whoever records;
nothing runs or registers on import.
"""

from gateway.observability.health import HealthMonitor, HealthPolicy, HealthReport
from gateway.observability.instrument import RequestInstrumentation
from gateway.observability.logs import bind_request, configure_logging, get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.profiling import Profiler
from gateway.observability.record import RequestRecord, record_of
from gateway.observability.tracing import Tracing, passthrough_traceparent

__all__ = [
    "GatewayMetrics",
    "HealthMonitor",
    "HealthPolicy",
    "HealthReport",
    "Profiler",
    "RequestInstrumentation",
    "RequestRecord",
    "Tracing",
    "bind_request",
    "configure_logging",
    "get_logger",
    "passthrough_traceparent",
    "record_of",
]
