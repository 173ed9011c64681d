"""The mock provider: the Chat Completion API served for real by reference_model (see app.py for the routes)."""
