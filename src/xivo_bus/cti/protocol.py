"""XiVO's CTI protocol, server side, sans-I/O: one ``CtiSession`` per desktop client.

Feed it each message the client sent (``receive``) and it answers with a list of
*effects* for the transport to carry out, in order: ``Send`` a message, ``Close`` the
connection, ``Wait`` (act on nothing and read nothing for a while, then go on with the
rest), ``CheckPassword`` (a 2.x password against its scrypt hash, too slow for the event
loop: the transport checks it elsewhere and hands the result to ``password_checked``),
``LoggedIn`` (cancel the login timer, start pushing call forms) and ``Publish`` (a
``call_form_result`` event for the outbox). No sockets, no asyncio, no clock but the one
given: every rule is testable with plain dicts.

What the session does is what XiVO's CTI server did for protocol 1.2 (XiVO 13.22 to
15.20) and, for logging in, 2.x (16.01 to 19.03); ``../shared/spec/CTI-PROTOCOL.md``
has the facts. Replies of XiVO's "legacy" dispatcher (``login_pass``, ``login_capas``,
``getipbxlist``, ``keepalive``) carry ``replyid``; the others do not. Two deliberate
differences: an unknown login is refused at ``login_pass`` like a wrong password (XiVO
14.04+ refused it at ``login_id``, telling who exists), and refusals wait a second.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from xivo_bus.cti.messages import CtiMessageError, call_form_result
from xivo_bus.cti.users import User
from xivo_bus.events import CallFormResult

log = logging.getLogger("xivo_bus.cti")

PROTOCOL_1_2 = "1.2"
PROTOCOL_VERSIONS = (PROTOCOL_1_2, "2.0", "2.1", "2.2", "2.3")
IPBXID = "xivo"
PROFILE_ID = 1  # the one CTI profile: call forms
PROFILE_NAME = "Client"
# The customer info xlet is where the desktop client shows pushed call forms ("sheets").
CAPAXLETS = [["customerinfo", "dock", "fcms"]]
LISTS = ("users", "phones", "agents", "queues", "voicemails", "queuemembers")
LOGIN_TIMEOUT = 5.0  # XiVO's ctimain.login_timeout: the whole login must fit in it
REFUSAL_DELAY = 1.0  # a refused password is answered after this, as the broker does
# call_form_result a session may send: 10 at once, 2 a second sustained (an agent saves a
# form per call); the excess is dropped.
CALL_FORM_RATE = 2.0
CALL_FORM_BURST = 10
SESSION_ID_ALPHABET = string.ascii_letters + string.digits

# XiVO's default presences (its "xivo" presence group); "disconnected" is not chosen.
PRESENCES = {
    "available": ("Available", "#08FD20"),
    "away": ("Away", "#FDE50A"),
    "outtolunch": ("Out to lunch", "#001AFF"),
    "donotdisturb": ("Do not disturb", "#FF032D"),
    "berightback": ("Be right back", "#FFB545"),
}

# XiVO's legacy dispatcher: these answer with replyid; before login_capas they are an
# error (notloggedyet). We implement getipbxlist and keepalive; the others say so.
LEGACY_COMMANDS = frozenset(
    {
        "getipbxlist",
        "keepalive",
        "faxsend",
        "filetransfer",
        "chitchat",
        "logfromclient",
        "getqueuesstats",
        "ipbxcommand",
        "sheet",
        "actionfiche",
    }
)


class State(enum.Enum):
    CONNECTED = "connected"  # waiting for login_id
    IDENTIFIED = "identified"  # login_id answered, waiting for login_pass
    CHECKING = "checking"  # a 2.x password is being checked
    AUTHENTICATED = "authenticated"  # login_pass accepted, waiting for login_capas
    LOGGED = "logged"  # logged in (XiVO's connection_details["logged"])
    CLOSED = "closed"


# --- effects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    message: dict


@dataclass(frozen=True)
class Close:
    """Close the connection once what was sent is written; ``reason`` is for the log."""

    reason: str
    level: int = logging.INFO


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class CheckPassword:
    login: str
    password: str


@dataclass(frozen=True)
class LoggedIn:
    user: User


@dataclass(frozen=True)
class Publish:
    event: CallFormResult


Effect = Send | Close | Wait | CheckPassword | LoggedIn | Publish


class UserDirectory(Protocol):
    """What a session needs of the users file."""

    def get(self, login: str) -> User | None: ...


class TokenBucket:
    """``rate`` actions a second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Take a token if there is one."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def new_session_id() -> str:
    """XiVO's session id: 10 characters of ``[A-Za-z0-9]``, none repeated."""
    return "".join(secrets.SystemRandom().sample(SESSION_ID_ALPHABET, 10))


def hashed_password(sessionid: str, password: str) -> str:
    """What a protocol 1.2 client sends in ``login_pass``."""
    return hashlib.sha1(f"{sessionid}:{password}".encode()).hexdigest()


def _replyid(message: dict) -> dict:
    return {"replyid": message["commandid"]} if "commandid" in message else {}


def _unimplemented(message: dict) -> Send:
    """XiVO's answer to a legacy command it had no handler for."""
    reply = {"class": message["class"], **_replyid(message), "warning_string": "unimplemented"}
    return Send(reply)


class CtiSession:
    """One desktop client's session: its login, its user, its presence."""

    def __init__(
        self,
        users: UserDirectory,
        *,
        clock: Callable[[], float] = time.monotonic,
        session_ids: Callable[[], str] = new_session_id,
        call_form_rate: float = CALL_FORM_RATE,
        call_form_burst: int = CALL_FORM_BURST,
    ):
        self.users = users
        self.state = State.CONNECTED
        self.protocol: str | None = None  # the client's version, once login_id accepted it
        self.version_key = "xivoversion"  # "wazoversion" for wazo-17.16+ clients
        self.login: str | None = None
        self.sessionid: str | None = None
        self.user: User | None = None
        self.presence = "available"
        self._session_ids = session_ids
        self._call_forms = TokenBucket(call_form_rate, call_form_burst, clock)
        self.call_forms_dropped = 0  # beyond the rate, since the session began
        self._dropping = False

    @property
    def legacy(self) -> bool:
        """Protocol 1.2: the legacy dispatcher's replies carry replyid, errors close."""
        return self.protocol == PROTOCOL_1_2

    @property
    def authenticated(self) -> bool:
        return self.state in (State.AUTHENTICATED, State.LOGGED)

    def receive(self, message: dict) -> list[Effect]:
        """The effects of one message from the client (a dict with a string ``class``)."""
        kind = message["class"]
        if self.state is State.CLOSED:
            return []
        if not self.authenticated:
            # XiVO 14.05 dropped every class but login_* before login_pass succeeded.
            handler = _LOGIN_HANDLERS.get((self.state, kind))
            if handler is None:
                log.debug("CTI: %s before login, dropped", kind)
                return []
            return handler(self, message)
        if kind in LEGACY_COMMANDS and self.state is not State.LOGGED:
            return self._close_with(message, "notloggedyet", "command before login_capas")
        handler = _HANDLERS.get(kind)
        if handler is None:
            if kind in LEGACY_COMMANDS:
                return [_unimplemented(message)]
            log.debug("CTI: unknown class %r ignored", kind)
            return []
        return handler(self, message)

    def password_checked(self, user: User | None) -> list[Effect]:
        """The result of the ``CheckPassword`` effect: the user, or None if refused."""
        if self.state is not State.CHECKING:
            return []
        if user is None:
            self.state = State.IDENTIFIED  # 2.x: the error leaves the connection open
            refusal = {"class": "login_pass", "error_string": "login_password"}
            return [Wait(REFUSAL_DELAY), Send(refusal)]
        return self._authenticated(user, {"class": "login_pass"})

    def close(self, reason: str, level: int = logging.INFO) -> list[Effect]:
        self.state = State.CLOSED
        return [Close(reason, level)]

    # --- login -------------------------------------------------------------------------

    def _login_id(self, message: dict) -> list[Effect]:
        self.version_key = "wazoversion" if "wazoversion" in message else "xivoversion"
        version = message.get(self.version_key)
        login = message.get("userlogin")
        if version is None or not isinstance(login, str):
            return self.close("login_id without userlogin or version", logging.WARNING)
        if version not in PROTOCOL_VERSIONS:
            ours = "2.3" if self.version_key == "wazoversion" else PROTOCOL_1_2
            error = f"{self.version_key}_client:{version};{ours}"
            return [Send({"class": "login_id", "error_string": error})]
        if version == PROTOCOL_1_2 and not {"company", "ident"} <= message.keys():
            return self.close("login_id without company or ident", logging.WARNING)
        self.protocol, self.login = version, login
        self.sessionid = self._session_ids()
        self.state = State.IDENTIFIED
        return [Send({"class": "login_id", "sessionid": self.sessionid, self.version_key: version})]

    def _login_pass_unidentified(self, message: dict) -> list[Effect]:
        return self._close_with(message, "login_password", "login_pass before login_id")

    def _login_pass(self, message: dict) -> list[Effect]:
        if not self.legacy:
            password = message.get("password")
            if not isinstance(password, str):
                return self.close("login_pass without password", logging.WARNING)
            self.state = State.CHECKING
            return [CheckPassword(self.login, password)]
        if "hashedpassword" not in message:
            return self._close_with(message, "missing:hashedpassword", "no hashedpassword")
        user = self.users.get(self.login)
        received = message["hashedpassword"]
        if user is None or user.cti_password is None or not isinstance(received, str):
            accepted = False
        else:
            expected = hashed_password(self.sessionid, user.cti_password)
            accepted = hmac.compare_digest(expected.encode(), received.encode())
        if not accepted:
            reason = f"login {self.login!r} refused"
            return [Wait(REFUSAL_DELAY), *self._close_with(message, "login_password", reason)]
        return self._authenticated(user, {"class": "login_pass", **_replyid(message)})

    def _authenticated(self, user: User, reply: dict) -> list[Effect]:
        self.user = user
        self.state = State.AUTHENTICATED
        return [Send({**reply, "capalist": [PROFILE_ID]})]

    def _login_capas_unauthenticated(self, message: dict) -> list[Effect]:
        return self.close("login_capas before login_pass", logging.WARNING)

    def _login_capas(self, message: dict) -> list[Effect]:
        if self.state is not State.AUTHENTICATED:
            return []  # logged in already
        reply = {"class": "login_capas", **(_replyid(message) if self.legacy else {})}
        required = ("state", "capaid", "lastconnwins", "loginkind") if self.legacy else ("capaid",)
        missing = [key for key in required if key not in message]
        if missing:
            return self._error(reply, "missing:" + ",".join(missing))
        try:
            capaid = int(message["capaid"])
        except (TypeError, ValueError):
            capaid = None
        if capaid != PROFILE_ID:
            return self._error(reply, "unknown cti_profile_id")
        if message.get("state") in PRESENCES:
            self.presence = message["state"]
        self.state = State.LOGGED
        capas: dict[str, Any] = {
            "services": [],
            "preferences": {},
            "userstatus": _userstatus(),
            "phonestatus": {
                "0": {"longname": "Available", "color": "#0DFF25"},
                "-2": {"longname": "Does not exist", "color": "#030303"},
            },
        }
        if self.legacy:
            capas = {"regcommands": {}, "ipbxcommands": {}, **capas}
        reply.update(
            ipbxid=IPBXID,
            userid=str(self.user.id),
            appliname=PROFILE_NAME,
            capaxlets=CAPAXLETS,
            capas=capas,
        )
        # XiVO then told every client the user's new status.
        return [Send(reply), LoggedIn(self.user), Send(self._user_status())]

    def _error(self, reply: dict, error: str) -> list[Effect]:
        """An error of a legacy command: 1.2 closes after it, 2.x does not."""
        effects: list[Effect] = [Send({**reply, "error_string": error})]
        if self.legacy:
            effects += self.close(f"{reply['class']}: {error}", logging.WARNING)
        return effects

    def _close_with(self, message: dict, error: str, reason: str) -> list[Effect]:
        reply = {"class": message["class"], **_replyid(message), "error_string": error}
        return [Send(reply), *self.close(reason, logging.WARNING)]

    # --- logged in ---------------------------------------------------------------------

    def _getipbxlist(self, message: dict) -> list[Effect]:
        return [Send({"class": "getipbxlist", **_replyid(message), "ipbxlist": [IPBXID]})]

    def _keepalive(self, message: dict) -> list[Effect]:
        # XiVO had no handler for it: "unimplemented" is what its clients always got.
        return [_unimplemented(message)]

    def _getlist(self, message: dict) -> list[Effect]:
        function, listname = message.get("function"), message.get("listname")
        if message.get("tipbxid") != IPBXID or listname not in LISTS:
            return []  # XiVO answered unknown lists with nothing
        reply = {"class": "getlist", "function": function, "listname": listname}
        reply["tipbxid"] = IPBXID
        own = str(self.user.id)
        if function == "listid":
            return [Send({**reply, "list": [own] if listname == "users" else []})]
        if listname != "users" or str(message.get("tid")) != own:
            return []  # only the user's own entry exists here
        if function == "updateconfig":
            return [Send({**reply, "tid": own, "config": self._user_config()})]
        if function == "updatestatus":
            return [Send(self._user_status())]
        return []

    def _availstate(self, message: dict) -> list[Effect]:
        state = message.get("availstate")
        target = message.get("userid")
        if state not in PRESENCES or (target is not None and str(target) != str(self.user.id)):
            return []
        self.presence = state
        return [Send(self._user_status())]

    def _logout(self, message: dict) -> list[Effect]:
        return self.close(f"logout ({message.get('stopper', 'no reason')})")

    def _call_form_result(self, message: dict) -> list[Effect]:
        try:
            event = call_form_result(message, self.user.id)
        except CtiMessageError as error:
            log.warning("CTI: call_form_result of user %d ignored: %s", self.user.id, error)
            return []
        if not self._call_forms.take():
            # More than a person saves: dropped, so that a flooding client costs little
            # and cannot hold the others' results back.
            self.call_forms_dropped += 1
            if not self._dropping:
                log.warning(
                    "CTI: user %d sends call_form_result faster than %g a second; "
                    "dropping the excess",
                    self.user.id,
                    self._call_forms.rate,
                )
            self._dropping = True
            return []
        self._dropping = False
        return [Publish(event)]

    def _user_config(self) -> dict:
        first, _, last = self.user.name.partition(" ")
        return {
            "firstname": first,
            "lastname": last,
            "fullname": self.user.name,
            "enableclient": 1,
            "linelist": [],
            "agentid": None,
            "voicemailid": None,
            "enablednd": 0,
            "enablerna": 0,
            "enableunc": 0,
            "enablebusy": 0,
            "destrna": "",
            "destunc": "",
            "destbusy": "",
            "enablevoicemail": 0,
            "enablexfer": 0,
            "incallfilter": 0,
            "mobilephonenumber": "",
            "profileclient": PROFILE_NAME,
        }

    def _user_status(self) -> dict:
        return {
            "class": "getlist",
            "function": "updatestatus",
            "listname": "users",
            "tipbxid": IPBXID,
            "tid": str(self.user.id),
            "status": {"availstate": self.presence, "connection": "yes"},
        }


def _userstatus() -> dict:
    allowed = list(PRESENCES)
    status = {
        name: {"longname": longname, "color": color, "allowed": allowed, "actions": {}}
        for name, (longname, color) in PRESENCES.items()
    }
    status["disconnected"] = {"longname": "Disconnected", "color": "#202020", "actions": {}}
    return status


# Before login_pass succeeds: (state, class) → handler; anything else is dropped.
_LOGIN_HANDLERS = {
    (State.CONNECTED, "login_id"): CtiSession._login_id,
    (State.CONNECTED, "login_pass"): CtiSession._login_pass_unidentified,
    (State.CONNECTED, "login_capas"): CtiSession._login_capas_unauthenticated,
    (State.IDENTIFIED, "login_id"): CtiSession._login_id,  # a new session id
    (State.IDENTIFIED, "login_pass"): CtiSession._login_pass,
    (State.IDENTIFIED, "login_capas"): CtiSession._login_capas_unauthenticated,
}

# Once authenticated (login_capas is then the only login_* message that means anything).
_HANDLERS = {
    "login_capas": CtiSession._login_capas,
    "getipbxlist": CtiSession._getipbxlist,
    "keepalive": CtiSession._keepalive,
    "getlist": CtiSession._getlist,
    "availstate": CtiSession._availstate,
    "logout": CtiSession._logout,
    "call_form_result": CtiSession._call_form_result,
}
