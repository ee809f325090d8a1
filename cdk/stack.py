"""The Parlor stack: every construct composed in one place."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from cdk.api import Api
from cdk.data import Data
from cdk.messaging import Messaging


class ParlorStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        threshold = int(self.node.try_get_context("hosting_follower_threshold") or 600)
        data = Data(self, "Data")
        messaging = Messaging(self, "Messaging")
        api = Api(self, "Api", tables=data.tables, media_events=messaging.media_events,
                  hosting_follower_threshold=threshold)
        CfnOutput(self, "UserPoolId", value=api.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=api.user_pool_client.user_pool_client_id)
