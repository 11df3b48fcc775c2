"""The service's error answers: every error in one shape (`detail` naming the field first, and
`errors`), and a body size limit checked before the body is read. Bad input is a 4xx whose
message names the field, never a 5xx."""

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from level2_pipelines.schemas import ErrorPublic, FieldError


class BodySizeLimit:
    """Refuse a request body over `max_bytes` with a 413, before reading it all."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = HTTPException(
            status_code=413, detail=f"body: request body is larger than {self.max_bytes} bytes"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(ErrorPublic(detail=too_large.detail).model_dump(), 413)
            return await response(scope, receive, send)
        received = 0

        async def counting_receive() -> Message:
            # A chunked body declares no length: count it as it arrives. FastAPI turns the
            # HTTPException raised while it reads the body into the 413 response.
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise too_large
            return message

        await self.app(scope, counting_receive, send)


def _field_name(loc: tuple[int | str, ...]) -> str:
    """("body", "penguins", 3, "island") -> "penguins[3].island"; the whole body -> "body"."""
    parts = [p for p in loc if p != "body"]
    if not parts or (len(parts) == 1 and isinstance(parts[0], int)):
        return "body"  # malformed JSON reports a character offset, not a field
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name.lstrip(".")


def error_response(
    status_code: int,
    errors: list[FieldError],
    detail: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The project's error shape: one line naming every field (or `detail`), and the errors."""
    detail = detail or "; ".join(f"{e.field}: {e.message}" for e in errors)
    body = ErrorPublic(detail=detail, errors=errors).model_dump()
    return JSONResponse(body, status_code=status_code, headers=headers)


async def validation_error_handler(_: Request, error: RequestValidationError) -> JSONResponse:
    errors = [
        FieldError(field=_field_name(tuple(e["loc"])), message=e["msg"], type=e["type"])
        for e in error.errors()
    ]
    return error_response(422, errors)


async def http_error_handler(_: Request, error: StarletteHTTPException) -> JSONResponse:
    """Every error in the project's shape (`detail` naming the field first, and `errors`)."""
    # FastAPI answers a body that is not UTF-8, or nested too deeply for Python's JSON parser,
    # with a 400 "There was an error parsing the body" raised from the decoding error.
    if error.status_code == 400 and error.__cause__ is not None:
        message = f"cannot be read as UTF-8 JSON ({error.__cause__})"
        return error_response(400, [FieldError(field="body", message=message, type="json_invalid")])
    return error_response(error.status_code, [], str(error.detail), error.headers)
