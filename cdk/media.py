"""The media plane: aiortc media nodes as a Fargate service.

Tasks run in public subnets with public IPs, because WebRTC audio goes straight between
clients and a task (a node announces its public address in its ICE candidates). Only
signaling goes through the Application Load Balancer: an internal one, in subnets with
no route to the internet, which CloudFront reaches as a VPC origin and which forwards
only requests carrying CloudFront's secret header (cdk/edge.py), since the browser
reaches everything through the one CloudFront origin. The load balancer spreads
requests over the nodes; a node forwards what belongs to another node to it inside the
VPC, and a node relays a full Space of another node from it, so nodes reach each other
on the signaling port (and on UDP for the relay feeds, which the WebRTC rule already
admits)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.edge import OriginSecret
from media_node.identity import NODE_ID_FROM_AWS, NODE_TAG

MEDIA_NODE = Path(__file__).resolve().parent.parent / "media_node"
SIGNALING_PORT = 8700
# Worker i of a node takes every peer's ICE, DTLS and SRTP on UDP port ICE_PORT + i
# (media_node/transport/udp_mux.py).
ICE_PORT = 7900
COMMAND_QUEUE_PREFIX = "parlor-media-node-"
# The IAM policy variable a node's principal id is compared with (see media_node/config.py).
PRINCIPAL = "${aws:userid}"
# Participants a node takes per vCPU (its CAPACITY); autoscaling aims below it.
CAPACITY_PER_VCPU = 500
# A node's memory per vCPU (one worker each): Fargate's smallest size for 1 vCPU, and
# about 15 MB per 100 listeners (docs/performance.md) leaves room for CAPACITY.
MEMORY_MIB_PER_VCPU = 2048
# Fargate's task sizes, each of which takes MEMORY_MIB_PER_VCPU per vCPU.
FARGATE_VCPUS = (1, 2, 4, 8, 16)
# A node drains for up to 110 s (media_node), inside the container's stopTimeout; the
# load balancer keeps a stopping node's open requests as long.
DRAIN = Duration.seconds(120)
# The media node's metrics (media_node/metrics.py): its Service dimension, and the
# stack's name in a Stack dimension (METRICS_STACK), so that two deployments in one
# account never read each other's participants.
METRICS_NAMESPACE = "Parlor/Media"
METRICS_SERVICE = "parlor-media"


class Media(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, nodes_table: dynamodb.ITable,
                 media_events: sqs.IQueue, public_key: secretsmanager.ISecret,
                 origin: OriginSecret, max_nodes: int, vcpus: int = 1) -> None:
        super().__init__(scope, construct_id)
        if vcpus not in FARGATE_VCPUS:
            raise ValueError(f"media_node_vcpus must be one of {FARGATE_VCPUS}, got {vcpus}")
        stack = Stack.of(self)
        self.capacity = CAPACITY_PER_VCPU * vcpus
        self.stack_name = stack.stack_name
        # Two nodes in two Availability Zones when the ceiling allows it, so a zone's
        # outage or a node's replacement leaves a node to rejoin on.
        self.min_nodes = 2 if max_nodes >= 2 else 1
        self.vpc = ec2.Vpc(
            self, "Vpc", max_azs=2, nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC,
                                        cidr_mask=24),
                # The signaling load balancer's: no route out, nothing public.
                ec2.SubnetConfiguration(name="signaling", cidr_mask=24,
                                        subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
            flow_logs={"all": ec2.FlowLogOptions(
                traffic_type=ec2.FlowLogTrafficType.REJECT)},
        )
        self.cluster = ecs.Cluster(self, "Cluster", vpc=self.vpc,
                                   container_insights_v2=ecs.ContainerInsights.ENABLED)

        # The image is built for x86-64 (the native send path is compiled for it) and
        # the task asks Fargate for the same, whatever machine runs `cdk deploy`.
        task = ecs.FargateTaskDefinition(
            self, "Task", cpu=1024 * vcpus, memory_limit_mib=MEMORY_MIB_PER_VCPU * vcpus,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX))
        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH)
        # PUBLIC_URL (the site's origin, through which clients reach signaling) is added
        # by the stack once the site exists: the site's distribution needs this ALB first.
        self.container = task.add_container(
            "MediaNode",
            image=ecs.ContainerImage.from_asset(
                str(MEDIA_NODE), platform=ecr_assets.Platform.LINUX_AMD64),
            port_mappings=[ecs.PortMapping(container_port=SIGNALING_PORT)],
            environment={
                "PORT": str(SIGNALING_PORT),
                "ANNOUNCED_ADDRESS": "ecs",
                # Other nodes reach this one at its task's private address.
                "PRIVATE_URL": "ecs",
                "NODE_ID": NODE_ID_FROM_AWS,
                "NODES_TABLE": nodes_table.table_name,
                "MEDIA_EVENTS_QUEUE_URL": media_events.queue_url,
                "COMMAND_QUEUE_PREFIX": COMMAND_QUEUE_PREFIX,
                "CAPACITY": str(self.capacity),
                # One worker per vCPU of the task, said outright: the CPUs a Fargate
                # task may be scheduled on need not match its vCPU quota.
                "WORKERS": str(vcpus),
                "UDP_PORT": str(ICE_PORT),
                "METRICS_STACK": stack.stack_name,
                # Read again when a token names a key the node does not know (a rotation):
                # the injected JOIN_TOKEN_PUBLIC_KEY is only the set at the task's start.
                "JOIN_TOKEN_PUBLIC_KEY_SECRET_ARN": public_key.secret_arn,
                # Clients' candidates in the VPC's own range get no checks from the node.
                "PRIVATE_NETWORKS": self.vpc.vpc_cidr_block,
            },
            secrets={"JOIN_TOKEN_PUBLIC_KEY": ecs.Secret.from_secrets_manager(public_key)},
            logging=ecs.LogDrivers.aws_logs(stream_prefix="media", log_group=self.log_group),
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c",
                         "import urllib.request; urllib.request.urlopen("
                         f"'http://127.0.0.1:{SIGNALING_PORT}/health', timeout=2)"],
                interval=Duration.seconds(10), timeout=Duration.seconds(3),
                start_period=Duration.seconds(15), retries=3),
            # SIGTERM drains a node; its drain timeout (110 s) fits inside this.
            stop_timeout=DRAIN,
        )
        self._grant_node_permissions(task.task_role, stack, nodes_table, media_events)
        public_key.grant_read(task.task_role)
        # A node that holds rooms protects its task from scale-in through the ECS
        # agent's endpoint (ECS_AGENT_URI, which Fargate provides): in this cluster only.
        task.task_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
            resources=[stack.format_arn(service="ecs", resource="task",
                                        resource_name=f"{self.cluster.cluster_name}/*")]))

        self.node_security_group = ec2.SecurityGroup(
            self, "Nodes", vpc=self.vpc, allow_all_outbound=True,
            description="Parlor media nodes: WebRTC media from anywhere, signaling from the ALB")
        # WebRTC media reaches a worker on its one UDP port (all of its peers share it).
        self.node_security_group.add_ingress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.udp_range(ICE_PORT, ICE_PORT + vcpus - 1),
            "WebRTC media (ICE, DTLS-SRTP) from clients, one port per worker")
        # Relay feeds between nodes go from and to ports the kernel picks: from the
        # nodes' own security group only.
        self.node_security_group.connections.allow_internally(
            ec2.Port.all_udp(), "relay feeds between nodes")
        # Signaling forwarded to the node that holds a Space or session, and the
        # WebSocket of a relay feed: from the other nodes only.
        self.node_security_group.connections.allow_internally(
            ec2.Port.tcp(SIGNALING_PORT), "signaling and relay feeds between nodes")
        # No desired count in the template: ECS starts a new service at one task and
        # autoscaling owns the count from then on, so a deploy never resets it.
        self.service = ecs.FargateService(
            self, "Service", cluster=self.cluster, task_definition=task,
            assign_public_ip=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self.node_security_group],
            min_healthy_percent=100, max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )
        service = self.service.node.default_child
        assert isinstance(service, ecs.CfnService)
        service.add_property_deletion_override("DesiredCount")

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self, "Signaling", vpc=self.vpc, internet_facing=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            drop_invalid_header_fields=True)
        # An internal load balancer is reachable only from inside the VPC: from
        # CloudFront's VPC-origin interfaces, which CloudFront places in these subnets.
        self.load_balancer.connections.allow_from(
            ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(80),
            "CloudFront's VPC origin")
        listener = self.load_balancer.add_listener(
            "Http", port=80, open=False,
            default_action=elbv2.ListenerAction.fixed_response(
                403, content_type="application/json",
                message_body='{"error": "forbidden", "message": "Use the Parlor site"}'))
        self.target_group = elbv2.ApplicationTargetGroup(
            self, "NodeTargets", vpc=self.vpc, port=SIGNALING_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP, targets=[self.service],
            health_check=elbv2.HealthCheck(path="/health", healthy_http_codes="200",
                                           interval=Duration.seconds(15)),
            deregistration_delay=DRAIN)
        listener.add_action(
            "FromCloudFront", priority=10,
            conditions=[elbv2.ListenerCondition.http_header(origin.header, origin.accepted),
                        elbv2.ListenerCondition.path_patterns(["/media/*"])],
            action=elbv2.ListenerAction.forward([self.target_group]))
        self.node_security_group.connections.allow_from(
            self.load_balancer, ec2.Port.tcp(SIGNALING_PORT), "signaling from the ALB")

        self._scale(max_nodes)

    def _scale(self, max_nodes: int) -> None:
        """Out on CPU or participants per node; in only when nodes are nearly idle.

        Target tracking would also scale in when participants fall, stopping a node with
        live rooms: both tracking policies only scale out. A step policy removes one
        node at a time after a quarter of an hour below a tenth of capacity per node,
        and ECS stops only tasks whose node has not protected itself (a node protects
        its task while it holds rooms), so no live Space is cut by scale-in."""
        scaling = self.service.auto_scale_task_count(min_capacity=self.min_nodes,
                                                     max_capacity=max_nodes)
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=60,
                                         disable_scale_in=True)
        scaling.scale_to_track_custom_metric(
            "Participants", metric=self.participants_metric(),
            target_value=self.capacity * 0.6, disable_scale_in=True,
            scale_out_cooldown=Duration.minutes(1))
        scaling.scale_on_metric(
            "Idle", metric=self.participants_metric(),
            scaling_steps=[
                autoscaling.ScalingInterval(upper=self.capacity * 0.1, change=-1),
                autoscaling.ScalingInterval(lower=self.capacity * 0.1, change=0)],
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            evaluation_periods=15, cooldown=Duration.minutes(10))

    def participants_metric(self, statistic: str = "Average") -> cloudwatch.Metric:
        """Participants per node, from the nodes' embedded-metric-format lines."""
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name="Participants",
                                 dimensions_map={"Service": METRICS_SERVICE,
                                                 "Stack": self.stack_name},
                                 statistic=statistic, period=Duration.minutes(1))

    @staticmethod
    def _grant_node_permissions(role: iam.IRole, stack: Stack, nodes_table: dynamodb.ITable,
                                media_events: sqs.IQueue) -> None:
        """Every node runs under one task role, so IAM tells nodes apart by their
        principal: the caller's `aws:userid` (the role id and the task's own session name)
        is each node's id (NODE_ID=aws). A node may then write only the registry item
        whose key is that id (dynamodb:LeadingKeys), and create, read and delete only the
        command queue it tagged with it (SQS attribute-based access control). It sends
        media events to the one shared queue."""
        queues = stack.format_arn(service="sqs", resource=f"{COMMAND_QUEUE_PREFIX}*")
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sqs:CreateQueue", "sqs:TagQueue"], resources=[queues],
            conditions={"StringEquals": {f"aws:RequestTag/{NODE_TAG}": PRINCIPAL}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteQueue"],
            resources=[queues],
            conditions={"StringEquals": {f"aws:ResourceTag/{NODE_TAG}": PRINCIPAL}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:PutItem", "dynamodb:DeleteItem"],
            resources=[nodes_table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [PRINCIPAL]}}))
        # Reading another node's entry (its private URL) to forward its signaling to
        # it or to subscribe to its feed: any item, one at a time, nothing else.
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:GetItem"], resources=[nodes_table.table_arn]))
        media_events.grant_send_messages(role)
        # ANNOUNCED_ADDRESS=ecs: the node reads its task's public IP from its ENI.
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["ec2:DescribeNetworkInterfaces"], resources=["*"]))

    @staticmethod
    def grant_commands(role: iam.IRole, stack: Stack) -> None:
        """Lets the control plane send commands to any node's queue."""
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sqs:SendMessage"],
            resources=[stack.format_arn(service="sqs",
                                        resource=f"{COMMAND_QUEUE_PREFIX}*")]))
