"""The CDK app: `cdk deploy` (run through cdk.json) brings Parlor up in an AWS account."""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk

# The stack derives its tables from the control plane's models in functions/.
sys.path.insert(0, str(Path(__file__).resolve().parent / "functions"))

from cdk.stack import ParlorStack

app = cdk.App()
ParlorStack(app, "Parlor")
app.synth()
