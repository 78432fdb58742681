"""What tests and benchmarks share: servers on loopback (PostgreSQL, S3, a capturing HTTP
server, a webhook receiver, a CONNECT proxy), the sandbox's test settings, write-back data
helpers and warehouse row checksums.

Fixtures stay in the conftest.py files, which build on these modules; nothing imports a conftest.
"""
