"""How a node names itself to IAM; imported by the CDK stack too, so it imports nothing.

NODE_ID=aws: the node's id is its AWS principal (`aws:userid`: the role id and, on ECS,
the task's own session name), the one per-task value IAM policies can compare a key or
a tag with. That is how the stack lets a node write only its own registry entry and use
only its own command queue (cdk/media.py), though every node has the same task role."""

NODE_ID_FROM_AWS = "aws"
# The tag a node puts on its command queue: its id, for IAM to match.
NODE_TAG = "parlor-node"
