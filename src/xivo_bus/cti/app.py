"""The call forms' HTTP side: agent pages, the JSON API (with its OpenAPI document), the
CTI message endpoint, the live bus page, and call forms pushed to open pages (sheets).

Every submission becomes a ``call_form_result`` whose ``user_id`` is the authenticated
user's (session cookie for pages, session or HTTP Basic for the API), never a value the
client sent. It is kept in the outbox first, so an unreachable broker delays it but does
not lose it. Sessions, CSRF tokens and the same-origin check are in ``sessions``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from xivo_bus import __version__, client, events
from xivo_bus.cti import messages
from xivo_bus.cti.forms import FormDef
from xivo_bus.cti.outbox import OUTBOX_FILE, Outbox
from xivo_bus.cti.sessions import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    SAFE_METHODS,
    SESSIONS_FILE,
    Session,
    SessionStore,
    clear_cookie,
    cross_origin,
    is_https,
    new_login_binding,
    set_cookie,
)
from xivo_bus.cti.sheets import Sheet, SheetError, SheetRouter
from xivo_bus.cti.users import User, UserStore
from xivo_bus.cti.watch import BusWatcher, WatchError

log = logging.getLogger("xivo_bus.cti")

SENT = "Sent to the bus."
KEPT = (
    "The bus is unreachable right now. Your form is saved and will be sent as soon as "
    "the bus is back; there is nothing more to do."
)
RECEIPTS = 500  # recent submissions a confirmation page can show


@dataclass
class CtiState:
    """What the routes share: files, the outbox, the watcher."""

    url: str
    data_dir: Path
    users: UserStore
    forms: dict[str, FormDef]
    secret: str
    confirm_wait: float = 2.0
    outbox: Outbox | None = None
    sessions: SessionStore | None = None
    watcher: BusWatcher | None = None
    sheets: SheetRouter | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    receipts: OrderedDict = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.sheets is None:
            self.sheets = SheetRouter(self.users, self.forms)

    def on_call_form_request(self, event: events.CallFormRequest) -> None:
        """A ``call_form_request`` from the bus: push the sheet it asks for."""
        try:
            self.sheets.push(event)
        except SheetError as error:
            log.warning("call_form_request ignored: %s", error)

    async def submit(self, event: events.CallFormResult) -> tuple[int, bool]:
        ident, confirmed = await self.outbox.submit(event, self.confirm_wait)
        self.receipts[ident] = (event.user_id, event.variables)
        while len(self.receipts) > RECEIPTS:
            self.receipts.popitem(last=False)
        return ident, confirmed


# --- API models (they make the OpenAPI document) -------------------------------------


class ApiErrorBody(BaseModel):
    error: str = Field(description="what went wrong, in one sentence")
    fields: dict[str, str] = Field(
        default_factory=dict, description="each offending field and its problem"
    )


class EventBody(BaseModel):
    name: Literal["call_form_result"]
    data: dict[str, Any] = Field(examples=[{"user_id": 40, "variables": {"firstname": "John"}}])


class SubmitResult(BaseModel):
    status: Literal["published", "queued"] = Field(
        description="published: the broker confirmed it; queued: the bus is unreachable, "
        "the event is kept and will be published when it is back"
    )
    message: str
    event: EventBody


class FormResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(
        examples=[{"firstname": "John", "lastname": "Doe", "phone": "", "comment": ""}],
        description="the form's field values by field name; checkboxes as true/false",
    )


class CtiInfos(BaseModel):
    model_config = ConfigDict(extra="allow")

    buttonname: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)


class CtiMessage(BaseModel):
    """XiVO's CTI message, as the XiVO client sent it."""

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "class": "call_form_result",
                    "commandid": 123,
                    "infos": {
                        "buttonname": "saveandclose",
                        "variables": {"XIVOFORM_firstname": "John", "XIVOFORM_lastname": "Doe"},
                    },
                }
            ]
        },
    )

    class_: Literal["call_form_result"] = Field(alias="class")
    commandid: int | str | None = None
    infos: CtiInfos


class CtiReply(SubmitResult):
    class_: Literal["call_form_result"] = Field(alias="class", default="call_form_result")
    commandid: int | str | None = None


class SheetDelivery(BaseModel):
    cti: int = Field(description="desktop client (CTI) sessions that got it")
    web: int = Field(description="open web pages that got it")


class SheetPushed(BaseModel):
    id: str
    form: str
    channel: str
    user_ids: list[int] = Field(description="the users it was for")
    delivered: SheetDelivery


class Me(BaseModel):
    id: int
    login: str
    name: str


class ApiError(Exception):
    def __init__(self, status: int, error: str, fields: dict[str, str] | None = None, **extra):
        self.status, self.error, self.fields, self.extra = status, error, fields or {}, extra


class Refused(Exception):
    """A state-changing request refused (403): from another site, or without its CSRF
    token; ``back`` is the page to reload."""

    def __init__(self, reason: str, back: str = "/forms"):
        super().__init__(reason)
        self.reason, self.back = reason, back


ERRORS = {
    401: {"model": ApiErrorBody, "description": "not logged in; use HTTP Basic"},
    404: {"model": ApiErrorBody, "description": "no such form"},
    422: {"model": ApiErrorBody, "description": "invalid input; `fields` says where"},
}


def create_app(state: CtiState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.sessions = SessionStore(state.data_dir / SESSIONS_FILE, state.secret, state.users)
        state.outbox = Outbox(state.data_dir / OUTBOX_FILE, client.Publisher(state.url))
        state.watcher = BusWatcher(state.url)
        state.watcher.consumer.subscribe(events.CallFormRequest.name, state.on_call_form_request)
        await state.outbox.start()
        await state.watcher.start()
        try:
            yield
        finally:
            state.closing.set()
            await state.watcher.close()
            await state.outbox.close()
            state.sessions.close()

    app = FastAPI(
        title="xivo-bus call forms",
        version=__version__,
        description="Submit call forms and XiVO CTI `call_form_result` messages; each one "
        "is published on the bus as a `call_form_result` event whose `user_id` is the "
        "authenticated user's. Authenticate with HTTP Basic (the users file) or the "
        "session cookie of the web pages; with the cookie, a POST also needs the page's "
        "CSRF token in the `X-CSRF-Token` header. A POST whose `Origin` (or `Referer`) "
        "is another site is refused (403).",
        lifespan=lifespan,
        dependencies=[Depends(same_origin)],
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI would load its assets from a CDN
        redoc_url=None,
    )
    app.state.cti = state
    package = Path(__file__).parent
    app.mount("/static", StaticFiles(directory=package / "static"), name="static")
    templates = Jinja2Templates(
        env=jinja2.Environment(
            loader=jinja2.PackageLoader("xivo_bus.cti", "templates"),
            autoescape=jinja2.select_autoescape(),
        )
    )
    # The CSRF token of the page's session, for its forms ("" before login).
    templates.env.globals["csrf_token"] = lambda request: _csrf_token(request, state)
    templates.env.globals["csrf_field"] = CSRF_FIELD

    _install_error_handlers(app, templates)
    _add_pages(app, state, templates)
    _add_api(app, state)
    _add_bus(app, state, templates)
    _add_sheets(app, state, templates)
    return app


def _install_error_handlers(app: FastAPI, templates: Jinja2Templates) -> None:
    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": error.reason, "fields": {}}, status_code=403)
        state: CtiState = request.app.state.cti
        context = {"user": session_user(request, state), "reason": error.reason}
        context["back"] = error.back
        return templates.TemplateResponse(request, "refused.html", context, status_code=403)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        body = {**error.extra, "error": error.error, "fields": error.fields}
        headers = {"WWW-Authenticate": 'Basic realm="xivo-bus"'} if error.status == 401 else None
        return JSONResponse(body, status_code=error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = {}
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"][1:]) or "body"
            fields[where] = item["msg"]
        return JSONResponse({"error": "invalid request", "fields": fields}, status_code=422)


# --- authentication --------------------------------------------------------------------


def same_origin(request: Request) -> None:
    """Every route's first check: a state-changing request from another origin (its
    ``Origin``, else its ``Referer``) is refused before anything else happens."""
    if request.method not in SAFE_METHODS:
        reason = cross_origin(request)
        if reason is not None:
            log.warning("refused %s %s: %s", request.method, request.url.path, reason)
            raise Refused(reason)


def current_session(request: Request, state: CtiState) -> Session | None:
    """The live session of the request's cookie (looked up once per request)."""
    session = getattr(request.state, "session", False)
    if session is False:
        session = state.sessions.get(request.cookies.get(COOKIE))
        request.state.session = session
    return session


def session_user(request: Request, state: CtiState) -> User | None:
    session = current_session(request, state)
    return None if session is None else session.user


def _csrf_token(request: Request, state: CtiState) -> str:
    session = current_session(request, state)
    return "" if session is None else state.sessions.csrf_token(session.id)


def check_csrf(state: CtiState, session: Session, token: object, back: str) -> None:
    if not state.sessions.csrf_valid(session.id, token):
        raise Refused(
            "the security token of the form is missing or out of date (the form must "
            "come from a page of this session).",
            back,
        )


def api_user(request: Request) -> User:
    """The user of an API request: HTTP Basic, else the page session; 401 otherwise."""
    state: CtiState = request.app.state.cti
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            login, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed HTTP Basic credentials") from None
        user = state.users.authenticate(login, password)
        if user is None:
            raise ApiError(401, "unknown login or wrong password")
        return user
    session = current_session(request, state)
    if session is None:
        raise ApiError(401, "authentication required: HTTP Basic or a logged-in session")
    if request.method not in SAFE_METHODS and not state.sessions.csrf_valid(
        session.id, request.headers.get(CSRF_HEADER)
    ):
        # The browser sends the cookie whoever made the page: the token says it was ours.
        raise Refused(f"a request with the session cookie needs the {CSRF_HEADER} header")
    return session.user


def _event_body(event: events.CallFormResult) -> dict:
    return {"name": event.name, "data": event.data}


def _safe_next(target: str | None) -> str:
    """Only same-site paths, so a login link cannot send the agent elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/forms"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- pages -----------------------------------------------------------------------------


def _add_pages(app: FastAPI, state: CtiState, templates: Jinja2Templates) -> None:
    def render(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("user", session_user(request, state))
        return templates.TemplateResponse(request, name, context, status_code=status)

    def login_redirect(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/forms", status_code=303)

    def login_form(request: Request, status: int = 200, **context) -> HTMLResponse:
        """The login page; its token is bound to the login cookie (made if missing)."""
        binding = request.cookies.get(LOGIN_COOKIE)
        fresh = not binding
        if fresh:
            binding = new_login_binding()
        token = state.sessions.csrf_token(binding)
        response = render(request, "login.html", status, login_csrf=token, **context)
        if fresh:
            set_cookie(response, LOGIN_COOKIE, binding, secure=is_https(request))
        return response

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request, next: str = "/forms"):
        return login_form(request, next=_safe_next(next), error=None, login="")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = await request.form()
        login, password = str(form.get("login", "")), str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "")))
        if not state.sessions.csrf_valid(request.cookies.get(LOGIN_COOKIE), form.get(CSRF_FIELD)):
            raise Refused(
                "the security token of the login form is missing or out of date (the "
                "login page must come from this service, with cookies allowed).",
                f"/login?next={quote(target)}",
            )
        user = await asyncio.to_thread(state.users.authenticate, login.strip(), password)
        if user is None:
            error = "Unknown login or wrong password."
            return login_form(request, 401, next=target, error=error, login=login)
        old = request.cookies.get(COOKIE)
        if old:
            state.sessions.end(old)
        session = state.sessions.create(user)
        response = RedirectResponse(target, status_code=303)
        max_age = int(state.sessions.lifetime)
        set_cookie(response, COOKIE, session.id, secure=is_https(request), max_age=max_age)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> RedirectResponse:
        session = current_session(request, state)
        if session is not None:
            form = await request.form()
            check_csrf(state, session, form.get(CSRF_FIELD), "/forms")
            state.sessions.end(session.id)  # a copy of the cookie ends with it
        response = RedirectResponse("/login", status_code=303)
        clear_cookie(response, COOKIE, secure=is_https(request))
        return response

    @app.get("/forms", include_in_schema=False)
    async def form_list(request: Request):
        if session_user(request, state) is None:
            return login_redirect(request)
        return render(request, "forms.html", forms=list(state.forms.values()))

    @app.get("/forms/{form_id}", include_in_schema=False)
    async def form_page(request: Request, form_id: str):
        session = current_session(request, state)
        if session is None:
            return login_redirect(request)
        form = state.forms.get(form_id)
        if form is None:
            return render(request, "missing.html", 404, form_id=form_id)
        flash = state.sessions.pop_flash(session)
        receipt = None
        if flash and flash.get("id") in state.receipts:
            receipt = state.receipts[flash["id"]][1]
        return render(
            request, "form.html", form=form, values={}, errors={}, flash=flash, receipt=receipt
        )

    @app.post("/forms/{form_id}", include_in_schema=False)
    async def form_submit(request: Request, form_id: str):
        session = current_session(request, state)
        if session is None:
            return login_redirect(request)
        user = session.user
        posted = await request.form()
        check_csrf(state, session, posted.get(CSRF_FIELD), f"/forms/{form_id}")
        form = state.forms.get(form_id)
        if form is None:
            return render(request, "missing.html", 404, form_id=form_id)
        # Only the form's own fields: a user_id or anything else posted is ignored.
        submitted = {field.name: posted.get(field.name) for field in form.fields}
        variables, errors = form.validate_submission(submitted)
        if errors:
            return render(
                request, "form.html", 422, form=form, values=variables, errors=errors, flash=None
            )
        ident, confirmed = await state.submit(
            events.CallFormResult(user_id=user.id, variables=variables)
        )
        state.sessions.set_flash(session, {"id": ident, "sent": confirmed})
        return RedirectResponse(f"/forms/{form_id}", status_code=303)


# --- API -------------------------------------------------------------------------------


def _add_api(app: FastAPI, state: CtiState) -> None:
    def get_form(form_id: str) -> FormDef:
        form = state.forms.get(form_id)
        if form is None:
            raise ApiError(404, f"no form {form_id!r}", known=sorted(state.forms))
        return form

    async def publish(event: events.CallFormResult) -> tuple[int, dict]:
        _, confirmed = await state.submit(event)
        result = {
            "status": "published" if confirmed else "queued",
            "message": SENT if confirmed else KEPT,
            "event": _event_body(event),
        }
        return (201 if confirmed else 202), result

    @app.get("/api/me", response_model=Me, responses={401: ERRORS[401]}, tags=["users"])
    async def me(request: Request) -> dict:
        """The authenticated user: their `id` is the `user_id` of their events."""
        return api_user(request).public()

    @app.get("/api/forms", response_model=list[FormDef], responses={401: ERRORS[401]})
    async def list_forms(request: Request) -> list[FormDef]:
        """Every call form with its fields."""
        api_user(request)
        return list(state.forms.values())

    @app.get("/api/forms/{form_id}", response_model=FormDef, responses=ERRORS)
    async def show_form(request: Request, form_id: str) -> FormDef:
        """One call form with its fields."""
        api_user(request)
        return get_form(form_id)

    @app.post(
        "/api/forms/{form_id}/results",
        response_model=SubmitResult,
        status_code=201,
        responses={202: {"model": SubmitResult, "description": "kept: the bus is unreachable"}}
        | ERRORS,
    )
    async def submit_form(request: Request, form_id: str, body: FormResultIn) -> JSONResponse:
        """Validate a form result and publish it as `call_form_result` for the
        authenticated user. 201 once the broker confirmed it; 202 when the bus is
        unreachable (the result is kept and published when it is back); 422 with
        `fields` for invalid values, nothing published."""
        user = api_user(request)
        form = get_form(form_id)
        variables, errors = form.validate_submission(body.variables)
        if errors:
            raise ApiError(422, f"invalid {form_id} form", errors)
        status, result = await publish(events.CallFormResult(user_id=user.id, variables=variables))
        return JSONResponse(result, status_code=status)

    @app.post(
        "/api/cti",
        response_model=CtiReply,
        status_code=201,
        responses={
            202: {"model": CtiReply, "description": "kept: the bus is unreachable"},
            401: ERRORS[401],
            422: ERRORS[422],
        },
        tags=["cti"],
    )
    async def cti_message(request: Request, message: CtiMessage) -> JSONResponse:
        """XiVO's CTI `call_form_result` message. As XiVO's CTI server did: only the
        variables named `XIVOFORM_*` are kept, with that prefix stripped, and the
        `user_id` is the authenticated user's."""
        user = api_user(request)
        raw = message.model_dump(by_alias=True)
        try:
            event = messages.call_form_result(raw, user.id)
        except messages.CtiMessageError as error:
            extra = {"class": messages.CLASS, "commandid": message.commandid}
            raise ApiError(422, str(error), error.fields, **extra) from None
        status, result = await publish(event)
        reply = {"class": messages.CLASS, "commandid": message.commandid, **result}
        return JSONResponse(reply, status_code=status)


# --- live bus --------------------------------------------------------------------------


def _add_bus(app: FastAPI, state: CtiState, templates: Jinja2Templates) -> None:
    @app.get("/bus", include_in_schema=False)
    async def bus_page(request: Request):
        user = session_user(request, state)
        if user is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return templates.TemplateResponse(
            request, "bus.html", {"user": user, "names": sorted(state.watcher.names)}
        )

    @app.get(
        "/bus/events",
        tags=["bus"],
        responses={200: {"content": {"text/event-stream": {}}}, 401: ERRORS[401]},
    )
    async def bus_events(
        request: Request, name: Annotated[list[str], Query(description="event names")] = ()
    ) -> StreamingResponse:
        """Server-sent events: each bus event (`{"id", "name", "data", "received"}`) as
        it arrives, the recent ones first; only the given `name`s if any."""
        api_user(request)
        wanted = {item for entry in name for item in entry.split(",") if item.strip()}
        wanted = {item.strip() for item in wanted}
        try:
            for item in wanted:
                state.watcher.watch(item)
        except WatchError as error:
            raise ApiError(422, str(error), {"name": str(error)}) from None
        after = _last_event_id(request)
        return StreamingResponse(
            _stream(state, wanted, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _last_event_id(request: Request) -> int:
    try:
        return int(request.headers.get("last-event-id", "0"))
    except ValueError:
        return 0


async def _live(state: CtiState, get, frame) -> AsyncIterator[str]:
    """Server-sent events: ``frame(item)`` of each item ``get()`` gives (skipped when it
    returns ""), a keep-alive comment after 15 s of quiet, until the service closes."""
    closing = asyncio.ensure_future(state.closing.wait())
    getter = None
    try:
        while not state.closing.is_set():
            getter = getter or asyncio.ensure_future(get())
            done, _ = await asyncio.wait(
                {getter, closing}, timeout=15, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                yield ": keep-alive\n\n"
            if getter not in done:
                continue
            item, getter = getter.result(), None
            text = frame(item)
            if text:
                yield text
    finally:
        closing.cancel()
        if getter is not None:
            getter.cancel()


async def _stream(state: CtiState, wanted: set[str], after: int) -> AsyncIterator[str]:
    def frame(item: dict) -> str:
        if item["id"] <= after or (wanted and item["name"] not in wanted):
            return ""
        return f"id: {item['id']}\nevent: bus\ndata: {json.dumps(item, ensure_ascii=False)}\n\n"

    with state.watcher.listen() as listener:
        yield "retry: 1000\n\n"
        for item in list(state.watcher.recent):
            if text := frame(item):
                yield text
        async for text in _live(state, listener.get, frame):
            yield text


# --- call forms pushed on a call (sheets) ----------------------------------------------


def _add_sheets(app: FastAPI, state: CtiState, templates: Jinja2Templates) -> None:
    @app.post(
        "/api/sheets",
        response_model=SheetPushed,
        status_code=201,
        responses=ERRORS,
        tags=["sheets"],
    )
    async def push_sheet(request: Request, body: events.CallFormRequest) -> dict:
        """Push a call form to every session of a user (or of a queue's members): their
        XiVO desktop clients get it as a `sheet`, their open pages as a pop-up, pre-filled
        from `variables`. Saving it publishes `call_form_result`. The same as publishing
        a `call_form_request` event on the bus, but answered with who got it."""
        api_user(request)
        try:
            delivery = state.sheets.push(body)
        except SheetError as error:
            raise ApiError(404, str(error), known=sorted(state.forms)) from None
        sheet = delivery.sheet
        return {
            "id": sheet.id,
            "form": sheet.form.id,
            "channel": sheet.channel,
            "user_ids": sorted(sheet.user_ids),
            "delivered": {"cti": delivery.cti, "web": delivery.web},
        }

    @app.get(
        "/sheets/events",
        tags=["sheets"],
        responses={200: {"content": {"text/event-stream": {}}}, 401: ERRORS[401]},
    )
    async def sheet_events(request: Request) -> StreamingResponse:
        """Server-sent events: a `ready` event once listening, then a `sheet` event
        (`{"id", "form", "title", "channel", "variables"}`) for each call form pushed to
        the authenticated user."""
        user = api_user(request)
        return StreamingResponse(
            _sheet_stream(state, user.id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/sheets/{sheet_id}", include_in_schema=False)
    async def sheet_fragment(request: Request, sheet_id: str):
        user = session_user(request, state)
        sheet = None if user is None else state.sheets.for_user(sheet_id, user.id)
        if sheet is None:
            return HTMLResponse("", status_code=404)
        return templates.TemplateResponse(
            request, "sheet.html", {"sheet": sheet, "form": sheet.form, "values": sheet.values()}
        )


async def _sheet_stream(state: CtiState, user_id: int) -> AsyncIterator[str]:
    def frame(sheet: Sheet) -> str:
        data = json.dumps(sheet.web_event(), ensure_ascii=False)
        return f"id: {sheet.id}\nevent: sheet\ndata: {data}\n\n"

    with state.sheets.web_page(user_id) as page:
        # Registered before "ready": a sheet pushed after the page saw it reaches it.
        yield "retry: 1000\nevent: ready\ndata: {}\n\n"
        async for text in _live(state, page.get, frame):
            yield text
