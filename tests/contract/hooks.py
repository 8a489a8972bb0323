"""Schemathesis hooks: the one format of ours that JSON Schema cannot express, and signing in.

A "password" here is 8 characters to 72 bytes of UTF-8 (bcrypt's limit). JSON Schema's
minLength/maxLength count characters, so the document can only say 8..72 characters; without
this strategy Schemathesis would generate 72-character passwords of multibyte characters, which
the service rightly refuses.
"""

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format(
    "password",
    st.text(min_size=8, max_size=72).filter(lambda s: len(s.encode("utf-8")) <= 72),
)


# ---- the signed-in pass --------------------------------------------------------------------
# run.sh passes the credentials of two users and an access token of the first. Every request is
# signed with that token, but for the ones that would end its session:
# - each logout is signed with a fresh session of the second user's, opened just before;
# - a DELETE /auth/sessions/{id} never names the token's own session; every other one names a
#   fresh session of the first user's instead (so that its 204 is checked), which is ended
#   afterwards if the request did not end it, so the user never nears its 100 sessions.
# Every other refresh sends a real refresh token of the second user's, so the 200 is checked too,
# and every other password change or deletion is made, with the right password, by a user of its
# own registered just before, so that its 204 is checked and the signed-in user stays.
import base64
import itertools
import json
import os
import urllib.request

BASE = os.environ.get("CONTRACT_BASE")
TOKEN = os.environ.get("CONTRACT_TOKEN")
USER = os.environ.get("CONTRACT_USER", "").split(":", 1)
CHURN = os.environ.get("CONTRACT_CHURN_USER", "").split(":", 1)
_turns = itertools.count()
PASSWORD_OF_THROWAWAYS = "throwaway-password"
_opened = {}  # id(case) -> the fresh session a DELETE names


def _sid(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"]


def _request(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        return json.loads(text) if text else None


def _log_in(user):
    return _request("POST", "/auth/login", {"email": user[0], "password": user[1]})


if TOKEN:
    TOKEN_SID = _sid(TOKEN)

    @schemathesis.auth(refresh_interval=None, retry_on=[])
    class SignedIn:
        """Schemathesis's own way to sign requests, so its check that invalid credentials are
        refused (ST401) knows which header is the credential and replaces it."""

        def get(self, case, ctx):
            if case.operation.method.upper() == "POST" and case.operation.path == "/auth/logout":
                return _log_in(CHURN)["access_token"]
            return TOKEN

        def set(self, case, data, ctx):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    _throwaways = itertools.count()

    def _throwaway_user():
        """A new user of its own, so that a password change or a deletion with the right
        password (whose 204 is then checked) leaves the signed-in user alone."""
        email = f"throwaway{next(_throwaways)}@example.com"
        user = {"name": "Throwaway", "phone": "+1 555 0100", "email": email, "password": PASSWORD_OF_THROWAWAYS}
        _request("POST", "/auth/register", user)
        return _log_in((email, PASSWORD_OF_THROWAWAYS))["access_token"]

    @schemathesis.hook
    def before_call(ctx, case, kwargs):
        method, path = case.operation.method.upper(), case.operation.path
        signed_with_token = (case.headers or {}).get("Authorization") == f"Bearer {TOKEN}"
        if (
            (method, path) in (("POST", "/auth/password"), ("DELETE", "/auth/me"))
            and signed_with_token
            and isinstance(case.body, dict)
            and next(_turns) % 2 == 0
        ):
            field = "current_password" if path == "/auth/password" else "password"
            if isinstance(case.body.get(field), str):
                case.headers = {**case.headers, "Authorization": f"Bearer {_throwaway_user()}"}
                case.body = {**case.body, field: PASSWORD_OF_THROWAWAYS}
        if method == "DELETE" and path == "/auth/sessions/{id}":
            named = (case.path_parameters or {}).get("id")
            if named == TOKEN_SID or next(_turns) % 2 == 0:
                sid = _sid(_log_in(USER)["access_token"])
                _opened[id(case)] = sid
                case.path_parameters = {**(case.path_parameters or {}), "id": sid}
        elif (
            method == "POST"
            and path == "/auth/refresh"
            and isinstance(case.body, dict)
            and isinstance(case.body.get("refresh_token"), str)
            and next(_turns) % 2 == 0
        ):
            case.body = {**case.body, "refresh_token": _log_in(CHURN)["refresh_token"]}

    @schemathesis.hook
    def after_call(ctx, case, response):
        sid = _opened.pop(id(case), None)
        if sid and response.status_code != 204:
            try:
                _request("DELETE", f"/auth/sessions/{sid}", token=TOKEN)
            except urllib.error.HTTPError:
                pass
