"""The backend bridge: commands from the TypeScript backend over Redis (validated in
``commands``; the service that runs them lands next)."""

from botlib.bridge.commands import COMMANDS, MAX_BYTES, Command, Rejection, parse_command

__all__ = ["COMMANDS", "MAX_BYTES", "Command", "Rejection", "parse_command"]
