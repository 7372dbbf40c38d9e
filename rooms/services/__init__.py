"""Every state change of SyncTV, called alike by the HTTP API, the WebSocket consumer and the admin.

Each function checks permissions, writes PostgreSQL (the source of truth), then publishes
the event once the transaction commits.
"""
