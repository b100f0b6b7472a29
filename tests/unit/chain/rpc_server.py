"""A Solana JSON-RPC server on localhost backed by the embedded ledger (LiteSVM), for tests.

It answers the methods :class:`federity.chain.rpc.RpcLedger` calls through solana-py, so the real client code runs
against the real Solana runtime. Responses are built with solders' RPC response types, the same types solana-py
parses them with. Every raw transaction received is kept in ``received``.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from solders.account_decoder import UiTokenAmount
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetBalanceResp,
    GetLatestBlockhashResp,
    GetMinimumBalanceForRentExemptionResp,
    GetMultipleAccountsResp,
    GetSignatureStatusesResp,
    GetTokenLargestAccountsResp,
    RpcBlockhash,
    RpcResponseContext,
    RpcSimulateTransactionResult,
    RpcTokenAccountBalance,
    SendTransactionResp,
)
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus

from federity.chain.embedded import EmbeddedLedger
from federity.chain.token2022 import parse_token_account


class LiteSvmRpc:
    """The JSON-RPC methods (named as in the protocol), over an :class:`EmbeddedLedger` in ``path``."""

    methods = (
        "getLatestBlockhash", "getMinimumBalanceForRentExemption", "getAccountInfo", "getMultipleAccounts",
        "getBalance", "getTokenLargestAccounts", "sendTransaction", "getSignatureStatuses",
    )

    def __init__(self, path: Path) -> None:
        self.ledger = EmbeddedLedger(path)
        self.received: list[bytes] = []
        self.statuses: dict[str, TransactionStatus] = {}
        self.lock = threading.Lock()

    def context(self) -> RpcResponseContext:
        return RpcResponseContext(self.ledger.svm.get_clock().slot)

    def call(self, method: str, params: list[Any]) -> str:
        """The JSON text of the response (its ``id`` is set by the caller)."""
        with self.lock, self.ledger.session():
            return getattr(self, method)(*params)

    def getLatestBlockhash(self, config: dict | None = None) -> str:
        value = RpcBlockhash(self.ledger.latest_blockhash(), self.ledger.svm.get_clock().slot + 150)
        return GetLatestBlockhashResp(value, self.context()).to_json()

    def getMinimumBalanceForRentExemption(self, size: int, config: dict | None = None) -> str:
        return GetMinimumBalanceForRentExemptionResp(self.ledger.rent_exempt_minimum(size)).to_json()

    def getAccountInfo(self, address: str, config: dict | None = None) -> str:
        return GetAccountInfoResp(self.ledger.get_account(Pubkey.from_string(address)), self.context()).to_json()

    def getMultipleAccounts(self, addresses: list[str], config: dict | None = None) -> str:
        accounts = [self.ledger.get_account(Pubkey.from_string(a)) for a in addresses]
        return GetMultipleAccountsResp(accounts, self.context()).to_json()

    def getBalance(self, address: str, config: dict | None = None) -> str:
        return GetBalanceResp(self.ledger.get_balance(Pubkey.from_string(address)), self.context()).to_json()

    def getTokenLargestAccounts(self, mint: str, config: dict | None = None) -> str:
        balances = []
        for address, account in self.ledger.token_accounts(Pubkey.from_string(mint)):
            amount = parse_token_account(account).amount
            balances.append(RpcTokenAccountBalance(address, UiTokenAmount(float(amount), 0, str(amount), str(amount))))
        return GetTokenLargestAccountsResp(balances, self.context()).to_json()

    def sendTransaction(self, encoded: str, config: dict | None = None) -> str:
        raw = base64.b64decode(encoded)
        self.received.append(raw)
        transaction = Transaction.from_bytes(raw)
        preflight = self.ledger.svm.simulate_transaction(transaction)
        if isinstance(preflight, FailedTransactionMetadata):  # answered as a validator's preflight failure
            result = RpcSimulateTransactionResult(err=preflight.err(), logs=preflight.meta().logs())
            error = SendTransactionPreflightFailureMessage(f"Transaction simulation failed: {preflight.err()}", result)
            return json.dumps({"jsonrpc": "2.0", "error": {"code": -32002, **json.loads(error.to_json())}, "id": 0})
        signature = self.ledger.send(transaction)
        self.statuses[str(signature)] = TransactionStatus(
            self.ledger.svm.get_clock().slot, None, None, None, TransactionConfirmationStatus.Confirmed
        )
        return SendTransactionResp(signature).to_json()

    def getSignatureStatuses(self, signatures: list[str], config: dict | None = None) -> str:
        value = [self.statuses.get(str(Signature.from_string(s))) for s in signatures]
        return GetSignatureStatusesResp(value, self.context()).to_json()


class _Handler(BaseHTTPRequestHandler):
    rpc: LiteSvmRpc

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request["method"] in self.rpc.methods:
            response = json.loads(self.rpc.call(request["method"], request.get("params", [])))
        else:
            response = {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}}
        response["id"] = request["id"]
        body = json.dumps(response).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class RpcServer:
    """A running server: ``url`` to connect to, ``rpc`` to inspect, ``close()`` to stop. ``port`` 0: any free."""

    def __init__(self, path: Path, port: int = 0) -> None:
        self.rpc = LiteSvmRpc(path)
        handler = type("Handler", (_Handler,), {"rpc": self.rpc})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
