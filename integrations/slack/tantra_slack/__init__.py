"""A Slack bot answering through a Tantra gateway: mentions and DMs, streamed by message updates,
one Tantra conversation per Slack thread, `/tantra` (model, reset). docs/bots.md."""

from tantra_slack.bot import Answerer, BotConfig, build_app

__all__ = ["Answerer", "BotConfig", "build_app"]
