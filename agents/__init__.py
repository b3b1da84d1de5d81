"""Agent definitions: LangGraph graphs with metadata, and the built-in agents.

This area is built by its own issue; see ARCHITECTURE.md §1 for what lives here.
"""
