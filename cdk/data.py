"""The DynamoDB tables, derived from the PynamoDB models (chalicelib.platform.models.table_specs),
so keys and indexes are defined once for the cloud, the local runtime and the tests."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from chalicelib.platform.models import TableSpec, table_specs

_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER,
          "B": dynamodb.AttributeType.BINARY}
_PROJECTIONS = {"ALL": dynamodb.ProjectionType.ALL, "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY}
_STREAMS = {"NEW_AND_OLD_IMAGES": dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            "NEW_IMAGE": dynamodb.StreamViewType.NEW_IMAGE}


def _attribute(key: tuple[str, str] | None) -> dynamodb.Attribute | None:
    return None if key is None else dynamodb.Attribute(name=key[0], type=_TYPES[key[1]])


class Data(Construct):
    """One on-demand, encrypted table per model, with point-in-time recovery."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.tables: dict[str, dynamodb.Table] = {}
        self.specs: dict[str, TableSpec] = {}
        for spec in table_specs():
            table = dynamodb.Table(
                self, spec.logical_name,
                partition_key=_attribute(spec.hash_key),
                sort_key=_attribute(spec.range_key),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True),
                stream=_STREAMS[spec.stream] if spec.stream else None,
                time_to_live_attribute=spec.ttl_attribute,
                removal_policy=RemovalPolicy.RETAIN,
            )
            for index in spec.indexes:
                table.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_attribute(index.hash_key),
                    sort_key=_attribute(index.range_key),
                    projection_type=_PROJECTIONS[index.projection],
                )
            self.tables[spec.env_var] = table
            self.specs[spec.env_var] = spec
