"""The one error type of the preset code."""


class PresetError(ValueError):
    """A preset cannot be written, found, trusted or loaded.

    The message names the file, variable, class or revision at fault and, where
    the user can do something about it, what to do.
    """
