"""What the requestor's real yagna knows about agreements, invoices and debit notes.

The real-network suite's counterpart of the local network's audit view: plain REST reads with
the requestor's key (yagna 0.17.6 market and payment APIs).
"""

from __future__ import annotations

from typing import Any

import httpx


class RealNetAudit:
    def __init__(self, url: str, app_key: str) -> None:
        self._url, self._key = url, app_key

    def _get(self, path: str, **params: Any) -> Any:
        with httpx.Client(
            base_url=self._url, headers={"Authorization": f"Bearer {self._key}"}, timeout=30
        ) as http:
            response = http.get(path, params=params)
            response.raise_for_status()
            return response.json()

    def agreement(self, agreement_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/market-api/v1/agreements/{agreement_id}")
        return result

    def invoices(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/payment-api/v1/invoices")
        return result

    def debit_notes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/payment-api/v1/debitNotes")
        return result
