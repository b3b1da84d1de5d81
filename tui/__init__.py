"""The Textual operator console (an HTTP API client of a local or remote kernel).

This area is built by its own issue; see ARCHITECTURE.md §1 for what lives here.
"""
