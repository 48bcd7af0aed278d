"""The one error type of mlengine.

Every failure a user can cause or see is an :class:`MlEngineError` carrying a canonical
code. The code decides the HTTP status (:data:`HTTP_STATUS`) on the server, the error the
client rebuilds, and the exit code of the CLI (:data:`EXIT_CODES`). Messages name the
resource or field at fault and say how to fix it.

    MlEngineError (code, message, field)
     ├── InvalidArgument      INVALID_ARGUMENT      400  exit 2
     ├── NotFound             NOT_FOUND             404  exit 4
     ├── AlreadyExists        ALREADY_EXISTS        409  exit 5
     ├── FailedPrecondition   FAILED_PRECONDITION   400  exit 6
     ├── PermissionDenied     PERMISSION_DENIED     403  exit 7
     ├── Unauthenticated      UNAUTHENTICATED       401  exit 7
     ├── ResourceExhausted    RESOURCE_EXHAUSTED    429  exit 8
     ├── Unavailable          UNAVAILABLE           503  exit 9
     └── Internal             INTERNAL              500  exit 1
"""

from __future__ import annotations

from enum import StrEnum

#: The ``@type`` of the detail that names the field at fault.
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


class Code(StrEnum):
    """Canonical google.rpc codes used by the v1 API."""

    OK = "OK"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"


#: Canonical code -> (numeric google.rpc code, HTTP status), as in the v1 error table.
HTTP_STATUS: dict[Code, tuple[int, int]] = {
    Code.OK: (0, 200),
    Code.CANCELLED: (1, 499),
    Code.UNKNOWN: (2, 500),
    Code.INVALID_ARGUMENT: (3, 400),
    Code.DEADLINE_EXCEEDED: (4, 504),
    Code.NOT_FOUND: (5, 404),
    Code.ALREADY_EXISTS: (6, 409),
    Code.PERMISSION_DENIED: (7, 403),
    Code.RESOURCE_EXHAUSTED: (8, 429),
    Code.FAILED_PRECONDITION: (9, 400),
    Code.ABORTED: (10, 409),
    Code.OUT_OF_RANGE: (11, 400),
    Code.UNIMPLEMENTED: (12, 501),
    Code.INTERNAL: (13, 500),
    Code.UNAVAILABLE: (14, 503),
    Code.DATA_LOSS: (15, 500),
    Code.UNAUTHENTICATED: (16, 401),
}

#: Canonical code -> CLI exit code. 1 is reserved for unexpected failures.
EXIT_CODES: dict[Code, int] = {
    Code.INVALID_ARGUMENT: 2,
    Code.OUT_OF_RANGE: 2,
    Code.NOT_FOUND: 4,
    Code.ALREADY_EXISTS: 5,
    Code.ABORTED: 5,
    Code.FAILED_PRECONDITION: 6,
    Code.PERMISSION_DENIED: 7,
    Code.UNAUTHENTICATED: 7,
    Code.RESOURCE_EXHAUSTED: 8,
    Code.UNAVAILABLE: 9,
    Code.DEADLINE_EXCEEDED: 9,
    Code.CANCELLED: 130,
}


class MlEngineError(Exception):
    """An error with a canonical code, a message for people and, optionally, the field at fault.

    ``field`` is the lowerCamelCase path of the offending input, e.g.
    ``trainingInput.hyperparameters.params[0].minValue``, or a CLI flag such as ``--module-name``.
    """

    code: Code = Code.INTERNAL

    def __init__(self, message: str, *, field: str | None = None, code: Code | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code][1]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.code, 1)

    def to_status(self) -> dict[str, object]:
        """The google.rpc.Status body used inside the error envelope."""
        return {
            "code": HTTP_STATUS[self.code][1],
            "message": self.message,
            "status": self.code.value,
        }

    def envelope(self) -> dict[str, object]:
        """The Google JSON error body ``{"error": {...}}``, with a BadRequest detail naming
        the field when there is one."""
        status: dict[str, object] = self.to_status()
        if self.field:
            violation = {"field": self.field, "description": self.message}
            status["details"] = [{"@type": BAD_REQUEST_TYPE, "fieldViolations": [violation]}]
        return {"error": status}

    def __str__(self) -> str:
        return self.message


class InvalidArgument(MlEngineError):
    code = Code.INVALID_ARGUMENT


class NotFound(MlEngineError):
    code = Code.NOT_FOUND


class AlreadyExists(MlEngineError):
    code = Code.ALREADY_EXISTS


class FailedPrecondition(MlEngineError):
    code = Code.FAILED_PRECONDITION


class PermissionDenied(MlEngineError):
    code = Code.PERMISSION_DENIED


class Unauthenticated(MlEngineError):
    code = Code.UNAUTHENTICATED


class ResourceExhausted(MlEngineError):
    code = Code.RESOURCE_EXHAUSTED


class Unavailable(MlEngineError):
    code = Code.UNAVAILABLE


class Internal(MlEngineError):
    code = Code.INTERNAL


def error_for_code(code: Code | str, message: str, field: str | None = None) -> MlEngineError:
    """Rebuild the most specific error class for a canonical code (used by the client)."""
    code = Code(code) if not isinstance(code, Code) else code
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unavailable,
        Internal,
    ):
        if cls.code is code:
            return cls(message, field=field)
    return MlEngineError(message, field=field, code=code)
