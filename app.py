"""The CDK app: `cdk deploy` (run through cdk.json) brings Parlor up in an AWS account."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import aws_cdk as cdk

# The stack derives its tables from the control plane's models in functions/.
sys.path.insert(0, str(Path(__file__).resolve().parent / "functions"))

from cdk.stack import ParlorStack

app = cdk.App()
# The CDK command line sets these from the deploying credentials and region. The region
# must be known at synthesis: CloudFront's web ACL goes to us-east-1, beside the stack
# or in a companion stack (cdk/edge.py).
ParlorStack(app, "Parlor", env=cdk.Environment(
    account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
    region=os.environ.get("CDK_DEFAULT_REGION") or os.environ.get("AWS_DEFAULT_REGION")))
app.synth()
