"""JSON API for accounts under /api/v1. Thin: validated input in, service call, schema out."""
from __future__ import annotations

from apiflask import APIBlueprint

from taskforce.accounts import service
from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.accounts.schemas import (
    AgencyIn,
    AgencyOut,
    AgencyPatch,
    MeOut,
    RolesIn,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
    UserCreatedOut,
    UserIn,
    UserOut,
)

bp = APIBlueprint("accounts_api", __name__, url_prefix="/api/v1", tag="Accounts")

AUTH = [{"BearerAuth": []}, {"SessionCookie": []}]
ERRORS = {401: "Not signed in, or the token is unknown, revoked or expired",
          403: "Your role or token scope does not allow this",
          422: "Invalid input: see error.fields"}


@bp.get("/me")
@signed_in
@bp.output(MeOut)
@bp.doc(summary="Who am I", security=AUTH, responses={401: ERRORS[401]})
def me():
    actor = current_actor()
    user = service.get_user(actor=actor, user_id=actor.user_id)
    return {"id": user.id, "username": user.username, "full_name": user.full_name,
            "email": user.email, "agency": user.agency, "role_names": user.role_names,
            "token_scope": actor.token_scope}


# -- agencies ------------------------------------------------------------------

@bp.get("/agencies")
@requires("admin")
@bp.output(AgencyOut(many=True))
@bp.doc(summary="List agencies", security=AUTH, responses=ERRORS)
def list_agencies():
    return service.list_agencies(actor=current_actor())


@bp.post("/agencies")
@requires("admin")
@bp.input(AgencyIn, location="json")
@bp.output(AgencyOut, status_code=201)
@bp.doc(summary="Create an agency", security=AUTH,
        responses={**ERRORS, 409: "An agency with this name or ORI exists"})
def create_agency(json_data: dict):
    return service.create_agency(actor=current_actor(), **json_data)


@bp.patch("/agencies/<int:agency_id>")
@requires("admin")
@bp.input(AgencyPatch, location="json")
@bp.output(AgencyOut)
@bp.doc(summary="Change an agency", security=AUTH,
        responses={**ERRORS, 404: "No such agency", 409: "Name or ORI in use"})
def update_agency(agency_id: int, json_data: dict):
    return service.update_agency(actor=current_actor(), agency_id=agency_id, **json_data)


# -- users -----------------------------------------------------------------------

@bp.get("/users")
@requires("admin", "supervisor")
@bp.output(UserOut(many=True))
@bp.doc(summary="List users (supervisors: their agency's)", security=AUTH, responses=ERRORS)
def list_users():
    return service.list_users(actor=current_actor())


@bp.post("/users")
@requires("admin")
@bp.input(UserIn, location="json")
@bp.output(UserCreatedOut, status_code=201)
@bp.doc(summary="Create a user", security=AUTH,
        responses={**ERRORS, 409: "The username is taken"})
def create_user(json_data: dict):
    user, temporary = service.create_user(actor=current_actor(), **json_data)
    return {"user": user, "temporary_password": temporary}


@bp.get("/users/<int:user_id>")
@requires("admin", "supervisor")
@bp.output(UserOut)
@bp.doc(summary="One user", security=AUTH, responses={**ERRORS, 404: "No such user"})
def get_user(user_id: int):
    return service.get_user(actor=current_actor(), user_id=user_id)


@bp.put("/users/<int:user_id>/roles")
@requires("admin")
@bp.input(RolesIn, location="json")
@bp.output(UserOut)
@bp.doc(summary="Replace a user's roles", security=AUTH,
        responses={**ERRORS, 404: "No such user", 409: "Would remove the last administrator"})
def set_roles(user_id: int, json_data: dict):
    return service.set_roles(actor=current_actor(), user_id=user_id, roles=json_data["roles"])


@bp.post("/users/<int:user_id>/deactivate")
@requires("admin")
@bp.output(UserOut)
@bp.doc(summary="Deactivate a user and end their sessions", security=AUTH,
        responses={**ERRORS, 404: "No such user", 409: "Yourself, or the last administrator"})
def deactivate_user(user_id: int):
    return service.deactivate_user(actor=current_actor(), user_id=user_id)


@bp.post("/users/<int:user_id>/reactivate")
@requires("admin")
@bp.output(UserOut)
@bp.doc(summary="Reactivate a user", security=AUTH, responses={**ERRORS, 404: "No such user"})
def reactivate_user(user_id: int):
    return service.reactivate_user(actor=current_actor(), user_id=user_id)


@bp.post("/users/<int:user_id>/unlock")
@requires("admin", "supervisor")
@bp.output(UserOut)
@bp.doc(summary="Unlock an account locked after failed sign-ins", security=AUTH,
        responses={**ERRORS, 403: "A supervisor of another agency", 404: "No such user"})
def unlock_user(user_id: int):
    return service.unlock_user(actor=current_actor(), user_id=user_id)


# -- own API tokens ----------------------------------------------------------------

@bp.get("/tokens")
@signed_in
@bp.output(TokenOut(many=True))
@bp.doc(summary="Your API tokens", security=AUTH, responses={401: ERRORS[401]})
def list_tokens():
    return service.list_tokens(actor=current_actor())


@bp.post("/tokens")
@signed_in
@bp.input(TokenIn, location="json")
@bp.output(TokenCreatedOut, status_code=201)
@bp.doc(summary="Create an API token (from a browser session only; shown once)",
        security=[{"SessionCookie": []}],
        responses={**ERRORS, 403: "Called with an API token"})
def create_token(json_data: dict):
    token, raw = service.create_token(actor=current_actor(), **json_data)
    return {"token": raw, "api_token": token}


@bp.post("/tokens/<int:token_id>/revoke")
@signed_in
@bp.output(TokenOut)
@bp.doc(summary="Revoke one of your API tokens", security=AUTH,
        responses={**ERRORS, 404: "No such token of yours"})
def revoke_token(token_id: int):
    return service.revoke_token(actor=current_actor(), token_id=token_id)
