"""Errors of export, bundle loading and the registry."""

from stream_app.exceptions import InterestStreamError


class ExportError(InterestStreamError):
    """A checkpoint could not be exported to a bundle."""


class ShapeError(ExportError):
    """An exported graph's inputs, outputs or output shapes differ from the fixed signature."""


class AtolError(ExportError):
    """An exported graph's outputs differ from torch's by more than the tolerance."""


class BundleError(InterestStreamError):
    """A bundle is refused: its manifest, files, paths or signature do not check out."""


class ManifestError(BundleError):
    """manifest.json is missing or does not describe a bundle."""


class IntegrityError(BundleError):
    """A file the manifest lists is missing or its size or sha256 differs."""


class UnsafePathError(BundleError):
    """A manifest path points outside the bundle's own folder."""


class SignatureError(BundleError):
    """The manifest's HMAC signature is missing or wrong while a signing key is configured."""


class RegistryError(InterestStreamError):
    """A registry operation cannot be done (unknown version, nothing to roll back to, ...)."""
