"""The code behind tasks.py: local stack, checks, sealing and builds."""
