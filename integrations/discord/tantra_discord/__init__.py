"""A Discord bot answering through a Tantra gateway: mentions and DMs, streamed by message edits
(throttled, 2000-character pages), one Tantra conversation per Discord thread, `/tantra model`,
`/tantra reset`, `/tantra ask`, attachments as chat parts. docs/bots.md."""

from tantra_discord.answerer import Answerer, DiscordConfig
from tantra_discord.bot import TantraBot
from tantra_discord.streaming import EditStream

__all__ = ["Answerer", "DiscordConfig", "EditStream", "TantraBot"]
