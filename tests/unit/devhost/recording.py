"""An invoker for the devhost's front-end tests: answers every function with 200 and keeps what it received."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from devhost.indexing import FunctionSpec
from devhost.invoke import Invoker


class RecordingInvoker(Invoker):
    """Answers every function with 200 and keeps the request the function would have received."""

    def __init__(self) -> None:
        super().__init__(max_threads=1)
        self.requests: list[func.HttpRequest] = []

    async def invoke(self, spec: FunctionSpec, trigger_value: Any, **_: Any) -> Any:
        self.requests.append(trigger_value)
        return func.HttpResponse("ok")
