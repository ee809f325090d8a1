"""Structured JSON logs for every Lambda function of the app: Powertools' Logger, one
JSON object a line, with the invocation's request id, function name and cold start.

The domain modules keep logging through the standard library (`logging.getLogger`),
as libraries do; `structure(...)` hands them the same JSON formatter, so CloudWatch
Logs Insights can query every line by its fields. Locally the same lines reach the
terminal of `make up`: what Lambda would log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

SERVICE = "parlor"

logger = Logger(service=SERVICE)
# The first invocation of this process (a Lambda execution environment) is its cold one.
_cold_start = True


def structure(prefix: str = "chalicelib") -> None:
    """Give the standard loggers under `prefix` (registered by then: call it once the
    modules are imported) the app's JSON output."""
    copy_config_to_registered_loggers(source_logger=logger, include={prefix})


def with_lambda_context(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware: the invocation's Lambda context in every line logged while
    it runs (what Powertools' inject_lambda_context adds, for Chalice's handlers, which
    are not called with the context). Kept per thread: one invocation at a time in
    Lambda, but the local runtime runs the API and its event sources side by side."""
    global _cold_start
    # A request has it as `lambda_context` (its `context` is API Gateway's); the other
    # events as `context`.
    context = next((c for c in (getattr(event, "lambda_context", None),
                                getattr(event, "context", None))
                    if hasattr(c, "aws_request_id")), None)
    if context is None:
        return get_response(event)
    keys = build_lambda_context_model(context).__dict__
    logger.thread_safe_append_keys(cold_start=_cold_start, **keys)
    _cold_start = False
    try:
        return get_response(event)
    finally:
        logger.thread_safe_clear_keys()
