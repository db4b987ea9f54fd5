"""The two halves of a test proxy in front of the node: pass a JSON-RPC request on, and answer with the node's reply."""

from __future__ import annotations

import json
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any


def forward(handler: BaseHTTPRequestHandler, node_url: str) -> tuple[list[dict[str, Any]], bytes]:
    """The request's calls (a single call as a batch of one), and the node's answer to it (with its token)."""
    body = handler.rfile.read(int(handler.headers["Content-Length"]))
    headers = {"Content-Type": "application/json", "Authorization": handler.headers.get("Authorization", "")}
    with urllib.request.urlopen(urllib.request.Request(node_url, body, headers), timeout=30) as answer:
        data: bytes = answer.read()
    calls = json.loads(body)
    return (calls if isinstance(calls, list) else [calls]), data


def reply(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
