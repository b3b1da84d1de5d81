"""Authorization (Casbin), principals and API keys, redaction and the tamper-evident audit log.

This area is built by its own issue; see ARCHITECTURE.md §1 for what lives here.
"""
