"""Test helpers, apart from the tests (dulwich's ``tests/support``): S3 test servers
(``s3servers``), S3 fault injection through botocore events (``s3faults``), store corruption and
subprocess helpers (``trust_helpers``), concurrent workers (``trust_workers``), index rows for the
query tests (``index_rows``), the memory probe the large-S3 test runs (``s3_memory_probe``),
long histories written fast (``histories``) and the web UI's stores, server and headless Chromium
(``browser``)."""
