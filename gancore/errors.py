"""The exceptions gancore raises for bad input: each carries a one-line message naming the field or file."""


class GancoreError(Exception):
    """Base class: anything the user can fix. The CLI prints the message on one line and exits 2."""


class ConfigError(GancoreError):
    """A config field is unknown, invalid, or inconsistent with the data; the message names the field."""


class DataError(GancoreError):
    """A dataset could not be loaded; the message names the file or directory at fault."""


class RunError(GancoreError):
    """A run directory is missing, incomplete, busy, or asked for something it does not hold."""
