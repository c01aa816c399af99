"""The package's exception."""


class KusariError(Exception):
    """An error from kusari: a message, and a hint saying what to do.

    Errors of the kusari program carry its message ("kusari: error: ..." and
    "  hint: ...") as they were printed.
    """

    def __init__(self, message, hint=None):
        self.message = message
        self.hint = hint
        text = message if not hint else "%s\n  hint: %s" % (message, hint)
        super().__init__(text)
