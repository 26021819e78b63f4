"""Adapters: one module per party we talk to; each turns library errors into ours at its edge."""
