"""The governed tool abstraction, the tool registry and built-in generic tools.

This area is built by its own issue; see ARCHITECTURE.md §1 for what lives here.
"""
