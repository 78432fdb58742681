"""What tests and benchmarks share: servers on loopback (PostgreSQL, S3, a capturing HTTP
server, a webhook receiver), the sandbox's test settings and write-back data helpers.

Fixtures stay in the conftest.py files, which build on these modules; nothing imports a conftest.
"""
