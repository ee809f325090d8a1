"""Devices that receive push notifications: phones through SNS mobile push, browsers
through Web Push.

A phone is an SNS platform endpoint of the deployment's APNs or FCM platform
application; a browser (platform `web`) is its PushSubscription, sent by webpush.py.
The user's devices live in their AlertSettings item, which the delivery reads for a
hundred recipients at a time."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError
from pynamodb.exceptions import DeleteError, UpdateError
from pynamodb.expressions.condition import size

from ..platform.config import settings
from ..platform.errors import Conflict, NotFound, Unavailable
from ..platform.models import AlertSettings, DeviceClaim
from . import webpush

APNS, FCM, WEB = "apns", "fcm", "web"
PLATFORMS = (APNS, FCM, WEB)
MAX_DEVICES = 10
TOKEN_MAX = 4096


@cache
def _sns() -> Any:
    return boto3.client("sns")


def _application_arn(platform: str) -> str:
    arn = (settings().apns_application_arn if platform == APNS
           else settings().fcm_application_arn)
    if arn is None:
        raise Unavailable(f"Push notifications through {platform.upper()} are not set up "
                          "in this deployment", code="push_unavailable")
    return arn


def device_id_of(platform: str, token: str) -> str:
    """The same device registered twice is one device."""
    return "dev_" + hashlib.sha256(f"{platform}:{token}".encode()).hexdigest()[:24]


def _view(device_id: str, device: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": device_id, "platform": device["platform"],
            "created_at": device["created_at"]}


def _devices(user_id: str) -> dict[str, Any]:
    try:
        item = AlertSettings.get(user_id, consistent_read=True)
    except AlertSettings.DoesNotExist:
        return {}
    return item.devices.as_dict() if item.devices else {}


def listed(user_id: str) -> dict[str, Any]:
    devices = _devices(user_id)
    return {"items": [_view(did, d) for did, d in sorted(devices.items(),
                                                         key=lambda kv: kv[1]["created_at"])]}


def register(user_id: str, platform: str, token: str) -> dict[str, Any]:
    """Idempotent for one token: SNS returns the same endpoint for the same token, and a
    browser's subscription is kept in one canonical form."""
    if platform == WEB:
        webpush.require_keys()
        token = webpush.subscription(token)
        application = None
    else:
        application = _application_arn(platform)
    device_id = device_id_of(platform, token)
    existing = _devices(user_id)
    if device_id in existing:
        return _view(device_id, existing[device_id])
    if len(existing) >= MAX_DEVICES:
        raise Conflict(f"You have {MAX_DEVICES} devices already; remove one first",
                       code="device_limit")
    device: dict[str, Any] = {"platform": platform, "created_at": time.time()}
    if application is None:
        device["subscription"] = token
    else:
        device["endpoint_arn"] = _endpoint_for(application, token, user_id)
    _claim(device_id, user_id)
    key = AlertSettings(user_id)
    # A map attribute must exist before one of its keys can be set.
    key.update(actions=[AlertSettings.devices.set(AlertSettings.devices | {})])
    try:
        key.update(actions=[AlertSettings.devices[device_id].set(device)],
                   condition=AlertSettings.devices[device_id].exists()
                   | (size(AlertSettings.devices) < MAX_DEVICES))
    except UpdateError as exc:
        raise Conflict(f"You have {MAX_DEVICES} devices already; remove one first",
                       code="device_limit") from exc
    return _view(device_id, device)


# What SNS says when the token has an endpoint whose attributes (its user) differ.
_TAKEN = re.compile(r"Endpoint (arn:[^ ]+) already exists with the same Token")


def _endpoint_for(application: str, token: str, user_id: str) -> str:
    """The token's SNS endpoint, with `user_id` as its user. SNS keeps one endpoint per
    token: registered before by another account, it is the same endpoint."""
    try:
        return str(_sns().create_platform_endpoint(
            PlatformApplicationArn=application, Token=token,
            CustomUserData=user_id)["EndpointArn"])
    except ClientError as exc:
        taken = _TAKEN.search(exc.response.get("Error", {}).get("Message", ""))
        if exc.response.get("Error", {}).get("Code") != "InvalidParameter" or taken is None:
            raise
    endpoint = taken.group(1)
    _sns().set_endpoint_attributes(EndpointArn=endpoint, Attributes={
        "CustomUserData": user_id, "Enabled": "true"})
    return endpoint


def _claim(device_id: str, user_id: str) -> None:
    """The device is `user_id`'s from now on: a phone that signed in to another account
    before leaves that account's devices, so its alerts stop reaching the phone."""
    try:
        owner: str | None = DeviceClaim.get(device_id, consistent_read=True).user_id
    except DeviceClaim.DoesNotExist:
        owner = None
    DeviceClaim(device_id, user_id=user_id).save()
    if owner is not None and owner != user_id:
        _drop(owner, device_id)


def _drop(user_id: str, device_id: str) -> None:
    """The device leaves the user's settings."""
    with contextlib.suppress(UpdateError):
        AlertSettings(user_id).update(actions=[AlertSettings.devices[device_id].remove()],
                                      condition=AlertSettings.devices[device_id].exists())


def remove(user_id: str, device_id: str) -> dict[str, Any]:
    device = _devices(user_id).get(device_id)
    if device is None:
        raise NotFound(f"No device with id '{device_id}'", code="device_not_found")
    forget(user_id, device_id, device.get("endpoint_arn", ""))
    return listed(user_id)


def forget(user_id: str, device_id: str, endpoint_arn: str) -> None:
    """Deletes the endpoint in SNS (a browser has none) and the device from the user's
    settings."""
    if endpoint_arn:
        _sns().delete_endpoint(EndpointArn=endpoint_arn)
    # Removed meanwhile (by the user, or by a delivery that found it disabled): done.
    _drop(user_id, device_id)
    with contextlib.suppress(DeleteError):
        DeviceClaim(device_id).delete(condition=DeviceClaim.user_id == user_id)


class EndpointDisabled(Exception):
    """SNS reports the endpoint disabled: the app was removed or the token expired."""


def push(endpoint_arn: str, text: str, data: dict[str, Any]) -> None:
    """One notification to one device; raises EndpointDisabled for a dead device."""
    message = {
        "default": text,
        "APNS": json.dumps({"aps": {"alert": text, "sound": "default"}, **data}),
        "APNS_SANDBOX": json.dumps({"aps": {"alert": text, "sound": "default"}, **data}),
        "GCM": json.dumps({"notification": {"body": text}, "data": data}),
    }
    try:
        _sns().publish(TargetArn=endpoint_arn, Message=json.dumps(message),
                       MessageStructure="json")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "EndpointDisabled":
            raise EndpointDisabled(endpoint_arn) from exc
        raise


def push_web(subscription: str, text: str, data: dict[str, Any]) -> None:
    """One notification to one browser; raises EndpointDisabled for a dead subscription."""
    try:
        webpush.push(subscription, text, data)
    except webpush.SubscriptionGone as exc:
        raise EndpointDisabled(subscription) from exc
