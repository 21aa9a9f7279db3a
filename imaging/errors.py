"""The one error type of the imaging package: a stable reason code and a human message."""


class ImagingError(Exception):
    """An image could not be fetched or compressed.

    `reason` is a short stable code (README lists them all); `transient` says whether the
    same attempt may succeed later (a timeout, a 503) or never will (a 404, a corrupt file).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did

    def __repr__(self) -> str:
        return f"ImagingError({self.reason!r}, {self.message!r})"
