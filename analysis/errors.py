"""User-facing errors.

Every problem a user can cause (bad file, unknown model, one class, ...) is
raised as :class:`VariscopeError` with a one-line message that names the
problem and, where possible, what to do. The CLI prints it on stderr with exit
code 2; the app shows it with ``st.error``.
"""


class VariscopeError(Exception):
    """An error caused by the input, with a one-line, user-facing message."""

    def __init__(self, message: str):
        message = " ".join(str(message).split())  # always one line
        # never echo raw control characters (terminal escapes, NUL, ...) from a user's file
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message
