"""API input and output shapes. Inputs check types and required fields; the
service checks the rules (ORI format, password policy, uniqueness), so the web
forms and the API refuse the same things with the same words."""
from __future__ import annotations

from apiflask import Schema, fields, validators

from taskforce.accounts.models import AGENCY_LEVELS, TOKEN_SCOPES, utcnow
from taskforce.accounts.permissions import ROLES


class AgencyIn(Schema):
    name = fields.String(required=True, validate=validators.Length(min=2, max=200))
    level = fields.String(required=True, validate=validators.OneOf(AGENCY_LEVELS))
    ori = fields.String(required=True, metadata={
        "description": "NCIC ORI: 2 letters (state) + 7 letters or digits, e.g. OH0180000"})
    active = fields.Boolean(load_default=True)


class AgencyPatch(Schema):
    name = fields.String(validate=validators.Length(min=2, max=200))
    level = fields.String(validate=validators.OneOf(AGENCY_LEVELS))
    ori = fields.String()
    active = fields.Boolean()


class AgencyOut(Schema):
    id = fields.Integer()
    name = fields.String()
    level = fields.String()
    ori = fields.String()
    active = fields.Boolean()
    created_at = fields.DateTime()


class UserIn(Schema):
    username = fields.String(required=True, metadata={
        "description": "3 to 64 characters: lower-case letters, digits, dot, dash, underscore"})
    full_name = fields.String(required=True, validate=validators.Length(min=2, max=200))
    email = fields.Email(required=True)
    agency_id = fields.Integer(required=True)
    roles = fields.List(fields.String(validate=validators.OneOf(ROLES)), required=True,
                        validate=validators.Length(min=1))
    password = fields.String(load_default=None, metadata={
        "description": "omit to have a temporary password generated; either way the user "
                       "must choose their own at first sign-in"})


class RolesIn(Schema):
    roles = fields.List(fields.String(validate=validators.OneOf(ROLES)), required=True,
                        validate=validators.Length(min=1))


class UserOut(Schema):
    id = fields.Integer()
    username = fields.String()
    full_name = fields.String()
    email = fields.String()
    agency_id = fields.Integer()
    agency_name = fields.String(attribute="agency.name")
    roles = fields.List(fields.String(), attribute="role_names")
    active = fields.Boolean()
    mfa_enrolled = fields.Boolean()
    locked = fields.Method("_locked")
    locked_until = fields.DateTime(allow_none=True)
    last_login_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()

    def _locked(self, user) -> bool:
        return user.locked_at(utcnow())


class UserCreatedOut(Schema):
    user = fields.Nested(UserOut)
    temporary_password = fields.String(allow_none=True, metadata={
        "description": "shown this once when generated; null when a password was given"})


class AgencyBrief(Schema):
    id = fields.Integer()
    name = fields.String()
    level = fields.String()
    ori = fields.String()


class MeOut(Schema):
    id = fields.Integer()
    username = fields.String()
    full_name = fields.String()
    email = fields.String()
    agency = fields.Nested(AgencyBrief)
    roles = fields.List(fields.String(), attribute="role_names")
    token_scope = fields.String(allow_none=True, metadata={
        "description": "read or write when calling with an API token, else null"})


class TokenIn(Schema):
    name = fields.String(required=True, validate=validators.Length(min=1, max=100))
    scope = fields.String(required=True, validate=validators.OneOf(TOKEN_SCOPES))
    expires_in_days = fields.Integer(load_default=90, validate=validators.Range(min=1, max=365))


class TokenOut(Schema):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String()
    scope = fields.String()
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)
    status = fields.Method("_status")

    def _status(self, token) -> str:
        return token.status(utcnow())


class TokenCreatedOut(Schema):
    token = fields.String(metadata={"description": "the secret: shown this once, never stored"})
    api_token = fields.Nested(TokenOut)
