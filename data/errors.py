"""The error of data that cannot be used as given (bad input: one line naming the file)."""


class DataInputError(ValueError):
    """A data file or folder that cannot be used as it is; the message names the file."""
