"""Sign-in that lasts: the web client's flows and token lifetimes, Cognito's e-mail
through SES when configured, and the API checking tokens were issued to the client."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from tests.infra.templates import one, one_id, variables

pytestmark = pytest.mark.slow


def test_the_web_client_uses_the_code_flow_and_refresh_tokens(template: Template) -> None:
    client = one(template, "AWS::Cognito::UserPoolClient")["Properties"]
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["GenerateSecret"] is False, "a browser app is a public client (PKCE)"
    assert "ALLOW_REFRESH_TOKEN_AUTH" in client["ExplicitAuthFlows"]
    units = client["TokenValidityUnits"]
    lifetimes = {kind: (client[f"{kind}TokenValidity"], units[f"{kind}Token"])
                 for kind in ("Access", "Id", "Refresh")}
    assert lifetimes == {"Access": (60, "minutes"), "Id": (60, "minutes"),
                         "Refresh": (43200, "minutes")}
    assert client["EnableTokenRevocation"] is True
    assert client["RefreshTokenRotation"]["Feature"] == "ENABLED"


def test_the_api_checks_the_audience_of_tokens(template: Template) -> None:
    client = one_id(template, "AWS::Cognito::UserPoolClient")
    for name in ("APIHandler", "WebsocketConnect"):
        assert variables(template, name)["AUTH_AUDIENCE"] == {"Ref": client}, name


def test_cognito_sends_its_own_mail_unless_ses_is_configured(
    template: Template, full_template: Template,
) -> None:
    pool = one(template, "AWS::Cognito::UserPool")["Properties"]
    assert pool.get("EmailConfiguration", {}).get("EmailSendingAccount",
                                                  "COGNITO_DEFAULT") == "COGNITO_DEFAULT"
    email = one(full_template, "AWS::Cognito::UserPool")["Properties"]["EmailConfiguration"]
    assert email["EmailSendingAccount"] == "DEVELOPER"
    assert email["From"] == "Parlor <no-reply@example.com>"
    assert "identity/no-reply@example.com" in str(email["SourceArn"])
