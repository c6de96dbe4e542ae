"""Error types the kiosk reports to users; each message says what went wrong and what to do."""


class KioskError(Exception):
    """Base class: an expected failure that becomes an `error` record, never a traceback."""


class InputError(KioskError):
    """An image or frame that cannot be used (empty, corrupt, truncated, too large)."""


class ModelError(KioskError):
    """A model file that is missing, altered (hash mismatch) or unreadable."""


class ConfigError(KioskError):
    """A configuration file with an unknown key or a value out of range."""
