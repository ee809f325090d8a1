"""Conditional multi-item writes that say which condition failed.

PynamoDB's TransactWrite sends checks, deletes, puts and updates in that order, and
DynamoDB's cancellation reasons follow the sent order; `Tx` keeps a label per item in
the same order so a caller learns which of its conditions did not hold. Conflicts with
a concurrent transaction are retried: they mean "try again", not "the limit is hit".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

_RETRYABLE = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
_ATTEMPTS = 8


@cache
def _connection() -> Connection:
    # One connection (and so one botocore client) per process: building a client
    # loads service models from disk, about 0.1 s, which no request should pay.
    return Connection()


class TxFailed(Exception):
    def __init__(self, failed: set[str]) -> None:
        super().__init__(f"conditions failed: {sorted(failed)}")
        self.failed = failed


class Tx:
    def __init__(self) -> None:
        self._groups: dict[str, list[tuple[str, Callable[[TransactWrite], None]]]] = {
            "check": [], "delete": [], "put": [], "update": []
        }

    def check(self, label: str, model_cls: type[Model], hash_key: Any,
              range_key: Any = None, *, condition: Condition) -> Tx:
        self._groups["check"].append(
            (label, lambda tw: tw.condition_check(model_cls, hash_key, range_key, condition))
        )
        return self

    def put(self, label: str, model: Model, *, condition: Condition | None = None) -> Tx:
        self._groups["put"].append((label, lambda tw: tw.save(model, condition=condition)))
        return self

    def update(self, label: str, model: Model, actions: list[Any], *,
               condition: Condition | None = None) -> Tx:
        self._groups["update"].append(
            (label, lambda tw: tw.update(model, actions=actions, condition=condition))
        )
        return self

    def delete(self, label: str, model: Model, *, condition: Condition | None = None) -> Tx:
        self._groups["delete"].append((label, lambda tw: tw.delete(model, condition=condition)))
        return self

    def commit(self) -> None:
        ordered = [op for group in ("check", "delete", "put", "update")
                   for op in self._groups[group]]
        for attempt in range(_ATTEMPTS):
            try:
                with TransactWrite(connection=_connection()) as tw:
                    for _, add in ordered:
                        add(tw)
                return
            except TransactWriteError as exc:
                reasons = exc.cancellation_reasons or []
                codes = [r.code if r is not None else "None" for r in reasons]
                failed = {ordered[i][0] for i, code in enumerate(codes)
                          if code == "ConditionalCheckFailed"}
                if failed:
                    raise TxFailed(failed) from exc
                retryable = (exc.cause_response_code in _RETRYABLE
                             or any(code in _RETRYABLE for code in codes))
                if not retryable or attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.02 * 2**attempt))
