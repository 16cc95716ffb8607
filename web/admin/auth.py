"""Who may use the console and the admin API: sessions, sign-in, CSRF tokens and the admin token.

A session is a random 256-bit id in a cookie signed with itsdangerous (key kept in the database);
the server stores only the id's hash, with the session's CSRF token and its expiry, so signing out
(or a password change) ends it for good. The cookie is HttpOnly, SameSite=Strict, Secure over HTTPS.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, TimestampSigner
from starlette.requests import Request
from starlette.responses import Response

from scim.filters import format_datetime
from storage import AdminSession
from web.admin import security
from web.admin.service import AdminService

SESSION_COOKIE = "scimlet_admin"
LOGIN_COOKIE = "scimlet_login"
SIGNING_KEY_SETTING = "session_signing_key"
LOGIN_FORM_SECONDS = 3600


class Throttled(Exception):
    """Too many failed sign-ins from this address, or one still being checked: wait retry_after seconds."""

    def __init__(self, retry_after: int, checking: bool = False) -> None:
        reason = (
            "A sign-in from this address is still being checked"
            if checking
            else "Too many failed sign-ins from this address"
        )
        super().__init__(f"{reason}; try again in {retry_after} seconds")
        self.retry_after = retry_after
        self.checking = checking


class AdminAuth:
    def __init__(self, service: AdminService) -> None:
        self.service = service
        self.store = service.store
        self.session_seconds = service.settings.admin.session_hours * 3600
        self.token = service.settings.admin.token
        self.throttle = security.SignInThrottle()
        self.used_login_forms = security.UsedTokens()
        self._signer: TimestampSigner | None = None

    async def signer(self) -> TimestampSigner:
        if self._signer is None:
            key = await self.store.setting_or_create(SIGNING_KEY_SETTING, security.new_token())
            self._signer = TimestampSigner(key, salt="scimlet-admin")
        return self._signer

    # --- sessions ----------------------------------------------------------------------------------

    async def sign_in(self, password: str, client: str) -> tuple[str, AdminSession] | None:
        """A new session (cookie value, session) for the right password, None for a wrong one.

        Every sign-in makes a fresh session id, so an id planted before sign-in is worth nothing.
        """
        wait = self.throttle.reserve(client)
        if wait:
            raise Throttled(wait, checking=client in self.throttle.checking)
        try:
            right = bool(password) and await self.service.check_admin_password(password)
        finally:
            self.throttle.release(client)
        if not right:
            self.throttle.failed(client)
            return None
        self.throttle.succeeded(client)
        session_id = security.new_token()
        created = datetime.now(UTC)
        session = AdminSession(
            security.token_hash(session_id),
            security.new_token(),
            format_datetime(created),
            format_datetime(created + timedelta(seconds=self.session_seconds)),
        )
        await self.store.create_admin_session(session, client)
        signer = await self.signer()
        return signer.sign(session_id).decode(), session

    async def session(self, request: Request) -> AdminSession | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        signer = await self.signer()
        try:
            session_id = signer.unsign(cookie, max_age=self.session_seconds).decode()
        except BadSignature:
            return None
        return await self.store.get_admin_session(security.token_hash(session_id))

    async def sign_out(self, session: AdminSession) -> None:
        await self.store.delete_admin_sessions(session.id_hash)

    def set_session_cookie(self, response: Response, request: Request, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=self.session_seconds,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def clear_session_cookie(response: Response, request: Request) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )

    # --- the sign-in form's own CSRF token (there is no session yet): a signed double-submit cookie ---

    async def login_form_token(self) -> tuple[str, str]:
        """(token for the form's hidden field, value for the login cookie)."""
        token = security.new_token()
        signer = await self.signer()
        return token, signer.sign(token).decode()

    @staticmethod
    def set_login_cookie(response: Response, request: Request, value: str) -> None:
        response.set_cookie(
            LOGIN_COOKIE,
            value,
            max_age=LOGIN_FORM_SECONDS,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def clear_login_cookie(response: Response, request: Request) -> None:
        response.delete_cookie(
            LOGIN_COOKIE, path="/admin", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )

    async def login_form_token_ok(self, request: Request, submitted: str) -> bool:
        """Whether the form's token matches its signed cookie, and the pair was never used before:
        each sign-in form is good for one attempt (a wrong password gets a new form)."""
        cookie = request.cookies.get(LOGIN_COOKIE)
        if not cookie or not submitted:
            return False
        signer = await self.signer()
        try:
            expected, signed_at = signer.unsign(cookie, max_age=LOGIN_FORM_SECONDS, return_timestamp=True)
        except BadSignature:
            return False
        if not hmac.compare_digest(expected.decode(), submitted):
            return False
        return self.used_login_forms.use(submitted, signed_at.timestamp() + LOGIN_FORM_SECONDS)

    # --- the admin API's bearer token -------------------------------------------------------------

    def bearer_token_ok(self, request: Request) -> bool | None:
        """None: no bearer token sent; else whether it is the configured admin token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        return bool(self.token) and bool(token) and security.matches_configured(token, self.token)


def csrf_ok(session: AdminSession, submitted: str | None) -> bool:
    if not submitted:
        return False
    return hmac.compare_digest(session.csrf_token, submitted)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
