"""What every API request passes before its own work, whatever the endpoint (see admission.py)."""

from gateway.admission.admission import Admission, Ticket, stage
from gateway.admission.body import load_json, read_request_body, validate
from gateway.admission.gate import Gate, key_prefix, with_file_limits
from gateway.admission.outcome import Outcome

__all__ = [
    "Admission",
    "Gate",
    "Outcome",
    "Ticket",
    "key_prefix",
    "load_json",
    "read_request_body",
    "stage",
    "validate",
    "with_file_limits",
]
