"""The errors Paperboy models; each carries the `error_code` recorded on a failed task."""

from __future__ import annotations


class PaperboyError(Exception):
    """Something went wrong while producing a digest."""

    code = "internal_error"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or self.__doc__ or self.code)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class TransientError(PaperboyError):
    """A temporary failure; the attempt is retried after a back-off."""

    code = "transient_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentError(PaperboyError):
    """A failure that another attempt would repeat; the task fails at once."""

    code = "permanent_error"


class NoSourcesError(PermanentError):
    """No papers or news were found for the digest's date and categories."""

    code = "no_sources"


class NothingRelevantError(PermanentError):
    """None of the day's items relates to the user's profile."""

    code = "nothing_relevant"


class FencedError(PaperboyError):
    """A newer attempt owns the task; this attempt must stop without writing."""

    code = "fenced"


class TaskCancelledError(PaperboyError):
    """An operator cancelled the task."""

    code = "cancelled"


class StoreError(TransientError):
    """The state store could not be reached or answered with an error."""

    code = "store_unavailable"


class StoreRejectedError(PermanentError):
    """The state store refused a write or query that no retry can fix: a value it cannot hold,
    a broken constraint, a column it does not have."""

    code = "store_rejected"
