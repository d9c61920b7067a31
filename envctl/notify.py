"""Webhook notifications: POST a JSON summary (with a Slack-compatible ``text``) and retry.

A failed delivery is returned as a ``Delivery`` with ``ok=False`` so the caller shows it in the
report and the exit code; it is never swallowed. Payloads carry node ids, statuses and object
addresses only: no values, so no secret can travel in them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from envctl.core.drift import Delivery
from envctl.core.secrets import KNOWN


def post(
    url: str, payload: dict[str, Any], *, attempts: int = 3, backoff: float = 0.5, timeout: float = 5.0
) -> Delivery:
    # the masking boundary: nothing leaves for a webhook that holds a known secret
    body = json.dumps(KNOWN.scrub(payload)).encode()
    detail = ""
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "envctl"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return Delivery(url, True, attempt)
                detail = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            detail = f"HTTP {e.code}"
            if 400 <= e.code < 500 and e.code != 429:
                return Delivery(url, False, attempt, detail)
        except (urllib.error.URLError, OSError) as e:
            detail = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    return Delivery(url, False, attempts, detail)


def post_all(urls: Sequence[str], payload: dict[str, Any]) -> tuple[Delivery, ...]:
    return tuple(post(u, payload) for u in urls)


def drift_payload(report_json: dict[str, Any]) -> dict[str, Any]:
    """The drift alert: summary, per-node status and addresses, and Slack-compatible text."""
    nodes = [
        {
            "node": n["node"],
            "status": n["status"],
            "causes": n["causes"],
            "objects": [
                {"address": c["address"], "action": c["action"], "manager": c["manager"]}
                for c in n["changes"]
            ],
        }
        for n in report_json["nodes"]
    ]
    drifted = [n["node"] for n in nodes if n["status"] not in ("in-sync",)]
    text = f"envctl drift in {report_json['environment']}: {report_json['summary']}" + (
        f" (attention: {', '.join(drifted)})" if drifted else ""
    )
    converge = report_json.get("converge")
    if converge:
        text += "; converge: " + "; ".join(converge["notes"])
    return {
        "text": text,
        "event": "drift",
        "environment": report_json["environment"],
        "commit": report_json["commit"],
        "summary": report_json["summary"],
        "drift": report_json["drift"],
        "exit_code": report_json["exit_code"],
        "nodes": nodes,
        "converge": report_json.get("converge"),
    }


def apply_payload(environment: str, outcome: str, statuses: dict[str, str], run: str) -> dict[str, Any]:
    """The convergence notice of an apply: success, partial failure or approval needed."""
    text = (
        f"envctl apply in {environment}: {outcome} ("
        + ", ".join(f"{n} {s}" for n, s in statuses.items())
        + ")"
    )
    return {
        "text": text,
        "event": "apply",
        "environment": environment,
        "outcome": outcome,
        "run": run,
        "nodes": [{"node": n, "status": s} for n, s in statuses.items()],
    }
