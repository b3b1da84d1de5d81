"""Long-term semantic memory (ChromaDB), offline embeddings, retention and context management.

This area is built by its own issue; see ARCHITECTURE.md §1 for what lives here.
"""
