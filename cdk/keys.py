"""The join-token key pair: made at deploy time by a custom resource and kept in two
Secrets Manager secrets, never in the template. The API alone may read the private key;
the media nodes read the public one."""

from __future__ import annotations

from aws_cdk import CustomResource, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct


class JoinTokenKeys(Construct):
    def __init__(self, scope: Construct, construct_id: str, *,
                 provisioner: lambda_.IFunction, provisioner_role: iam.IRole,
                 generation: str = "1") -> None:
        super().__init__(scope, construct_id)
        # Created empty-valued (a random placeholder); the custom resource writes the keys.
        self.private_key = secretsmanager.Secret(
            self, "PrivateKey", description="Parlor join-token signing key (Ed25519, PEM)",
            removal_policy=RemovalPolicy.DESTROY)
        self.public_key = secretsmanager.Secret(
            self, "PublicKey", description="Parlor join-token verification key (Ed25519, PEM)",
            removal_policy=RemovalPolicy.DESTROY)
        for secret in (self.private_key, self.public_key):
            secret.grant_write(provisioner_role)
        # A rotation keeps the previous key beside the new one: it reads the current set.
        self.private_key.grant_read(provisioner_role)
        provider = cr.Provider(self, "Provider", on_event_handler=provisioner)
        self.resource = CustomResource(
            self, "KeyPair", service_token=provider.service_token,
            properties={
                "PrivateKeySecretArn": self.private_key.secret_arn,
                "PublicKeySecretArn": self.public_key.secret_arn,
                "Generation": generation,
            })
        # The provisioner's permissions are a policy beside its role, which nothing
        # else waits for: the key pair must not be asked for before they exist.
        self.resource.node.add_dependency(provisioner_role)
