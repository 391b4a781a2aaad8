"""The bot-neutral core of Tantra's chat bots (Slack's `tantra_slack`, Discord's `tantra_discord`):
one Tantra conversation per chat thread, attachments as Responses content parts, the pacing and
paging of answers streamed by editing a message, configuration from the environment or secret
files, and the /healthz endpoint. docs/bots.md."""

from tantra_bots.attachments import Attachment, build_input, classify, part_for, refusal, with_left_out
from tantra_bots.book import ConversationBook, ThreadKey, conversation_request
from tantra_bots.config import env
from tantra_bots.health import serve_health
from tantra_bots.pacing import Throttle, brief_error, pages

__all__ = [
    "Attachment",
    "ConversationBook",
    "ThreadKey",
    "Throttle",
    "brief_error",
    "build_input",
    "classify",
    "conversation_request",
    "env",
    "pages",
    "part_for",
    "refusal",
    "serve_health",
    "with_left_out",
]
