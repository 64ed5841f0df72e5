"""The end-to-end checks: one program, run against the local stack by the tests and against a cluster by CI."""
