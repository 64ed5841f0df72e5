"""Helpers for tests: servers in threads, a cuttable TCP proxy, programs tests need."""
