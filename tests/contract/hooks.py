"""Schemathesis hooks: teach it the one format of ours that JSON Schema cannot express.

A "password" here is 8 characters to 72 bytes of UTF-8 (bcrypt's limit). JSON Schema's
minLength/maxLength count characters, so the document can only say 8..72 characters; without
this strategy Schemathesis would generate 72-character passwords of multibyte characters, which
the service rightly refuses.
"""

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format(
    "password",
    st.text(min_size=8, max_size=72).filter(lambda s: len(s.encode("utf-8")) <= 72),
)
