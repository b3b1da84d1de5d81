"""The all-MiniLM-L6-v2 tokenizer files (data only; Apache-2.0, see NOTICE)."""
