"""The error of the run store, shared by :mod:`evdet.data.storage` and :mod:`evdet.data.s3_credentials`.

Kept apart so that neither module imports the other for it: ``storage`` uses the credentials of ``s3_credentials``,
whose :class:`~evdet.data.s3_credentials.CredentialsError` is a :class:`StoreError`.
"""

from __future__ import annotations

__all__ = ["StoreError"]


class StoreError(ValueError):
    """A store cannot be reached or refuses an operation. The message names the store (endpoint and bucket for S3)
    and what was expected; it never contains a secret key."""
