"""Requestor building blocks on the Golem client: negotiation, scripts, payment routing."""
