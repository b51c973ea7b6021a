"""The backend bridge: commands from the TypeScript backend over Redis, validated in
``commands`` and answered by ``service.CommandService`` (``_answers``: each request id
once; ``_jobs``: long commands in processes of their own; ``_signal``: on-demand
signals through the loop's per-model step)."""

from botlib.bridge.commands import COMMANDS, MAX_BYTES, Command, Rejection, parse_command

__all__ = ["COMMANDS", "MAX_BYTES", "Command", "Rejection", "parse_command"]
