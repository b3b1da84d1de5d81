"""The FastAPI application: agent endpoints, control API, OpenAI-compatible facade.

This area is built by its own issue; see ARCHITECTURE.md §1 for what lives here.
"""
