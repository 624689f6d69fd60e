"""Errors the user should see as one plain sentence (CLI: one line and exit code; UI: gr.Error)."""


class UserFacingError(Exception):
    """Bad input or an impossible request; the message is written for the user."""


class BadImageError(UserFacingError):
    """The file is not a usable image (not an image, truncated, empty, too small or too large)."""


class BadPromptError(UserFacingError):
    """A prompt is outside the image or names an unknown joint."""
