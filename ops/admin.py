"""Makes an administrator of a deployed Parlor: adds a user of the stack's Cognito user
pool to the `admin` group, which the API reads from the access token's
`cognito:groups` (functions/chalicelib/access/auth.py).

    python -m ops.admin alice@example.org              # the stack "Parlor"'s pool
    python -m ops.admin alice@example.org --stack MyParlor
    python -m ops.admin alice@example.org --user-pool-id us-east-1_AbCdEf
    python -m ops.admin alice@example.org --remove

A fresh deployment has no administrator, and only an administrator can allowlist hosts
(PUT /users/{id}/hosting): this is how the first one is made, with the deploying
account's AWS credentials. The user signs in again to get a token with the group."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ADMIN_GROUP = "admin"
USER_POOL_OUTPUT = "UserPoolId"


class AdminError(RuntimeError):
    """Something the operator can fix: a stack, pool or user that is not there."""


def user_pool_of(stack: str, cloudformation: Any) -> str:
    """The user pool id the stack gives as its `UserPoolId` output."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise AdminError(f"no stack {stack!r} here: {exc}") from exc
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == USER_POOL_OUTPUT:
            return str(output["OutputValue"])
    raise AdminError(f"the stack {stack!r} has no {USER_POOL_OUTPUT} output")


def username_of(pool_id: str, who: str, cognito: Any) -> str:
    """The pool's username for `who`: an email address (users sign in with it) or a
    username as Cognito lists it."""
    if "@" in who:
        quoted = who.replace("\\", "\\\\").replace('"', '\\"')
        users = cognito.list_users(UserPoolId=pool_id, Filter=f'email = "{quoted}"',
                                   Limit=2)["Users"]
        if not users:
            raise AdminError(f"no user with the email {who!r} in {pool_id}")
        if len(users) > 1:
            raise AdminError(f"several users have the email {who!r}: give the username")
        return str(users[0]["Username"])
    try:
        return str(cognito.admin_get_user(UserPoolId=pool_id, Username=who)["Username"])
    except cognito.exceptions.UserNotFoundException as exc:
        raise AdminError(f"no user {who!r} in {pool_id}") from exc


def make_admin(pool_id: str, who: str, cognito: Any, *, remove: bool = False) -> str:
    """Adds (or removes) `who` to the admin group, creating the group if the pool lacks
    it; returns the username."""
    username = username_of(pool_id, who, cognito)
    if remove:
        cognito.admin_remove_user_from_group(UserPoolId=pool_id, Username=username,
                                             GroupName=ADMIN_GROUP)
        return username
    with contextlib.suppress(cognito.exceptions.GroupExistsException):
        cognito.create_group(UserPoolId=pool_id, GroupName=ADMIN_GROUP,
                             Description="Parlor administrators (host allowlist, suspensions)")
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=username,
                                    GroupName=ADMIN_GROUP)
    return username


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make a user of a deployed Parlor an admin")
    parser.add_argument("user", help="the user's email address or Cognito username")
    parser.add_argument("--stack", default="Parlor", help="the CloudFormation stack's name")
    parser.add_argument("--user-pool-id", help="the user pool, instead of the stack's output")
    parser.add_argument("--remove", action="store_true", help="take the admin group away")
    args = parser.parse_args(argv)
    try:
        pool_id = args.user_pool_id or user_pool_of(args.stack, boto3.client("cloudformation"))
        username = make_admin(pool_id, args.user, boto3.client("cognito-idp"),
                              remove=args.remove)
    except AdminError as exc:
        print(f"admin: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(f"admin: AWS refused: {exc}", file=sys.stderr)
        return 1
    done = "is no longer" if args.remove else "is now"
    print(f"{args.user} ({username}) {done} in the {ADMIN_GROUP!r} group of {pool_id}; "
          "the change shows in their next sign-in's token.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
