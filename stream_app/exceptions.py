"""Error root of the project. Each package raises subclasses of ``InterestStreamError``."""


class InterestStreamError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(InterestStreamError):
    """A setting is missing or has a value that cannot work."""
