"""Endpoint and credentials of the S3 server (MinIO in the cluster, any S3-compatible gateway locally).

They come ONLY from the environment or from files mounted from a Kubernetes Secret, never from a config file or a
command line, so they cannot end up in ``config.yaml``, a checkpoint's hyper-parameters or a pod's argument list:

=====================  ==========================  ==========================================================
environment variable   Secret file (in the dir)    meaning
=====================  ==========================  ==========================================================
``MINIO_ENDPOINT``     ``endpoint``                ``host:port`` or ``http(s)://host:port``
``MINIO_ACCESS_KEY``   ``access-key``              access key (user name)
``MINIO_SECRET_KEY``   ``secret-key``              secret key (never printed)
``MINIO_SECURE``       ``secure``                  ``true``/``false`` (HTTPS); default: the endpoint's scheme,
                                                   else ``false``
=====================  ==========================  ==========================================================

The Secret directory is ``MINIO_CREDENTIALS_DIR`` (default ``/var/run/secrets/evdet/minio``). A value from the
environment wins over the file of the same item.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from evdet.data.storage import StoreError

__all__ = ["S3Credentials", "load_s3_credentials", "DEFAULT_CREDENTIALS_DIR", "CredentialsError"]

#: Where the Kubernetes Secret with the MinIO credentials is mounted unless ``MINIO_CREDENTIALS_DIR`` says otherwise.
DEFAULT_CREDENTIALS_DIR = "/var/run/secrets/evdet/minio"

_ITEMS = {  # item -> (environment variable, Secret file name)
    "endpoint": ("MINIO_ENDPOINT", "endpoint"),
    "access_key": ("MINIO_ACCESS_KEY", "access-key"),
    "secret_key": ("MINIO_SECRET_KEY", "secret-key"),
    "secure": ("MINIO_SECURE", "secure"),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class CredentialsError(StoreError):
    """The S3 endpoint or credentials are missing or malformed. The message names the environment variable / Secret
    file; it never contains the secret key."""


@dataclass(frozen=True)
class S3Credentials:
    """Endpoint and key pair of an S3 server.

    Attributes:
        endpoint: ``host:port`` without scheme (what the minio SDK takes).
        access_key: access key (user name).
        secret_key: secret key; masked in ``repr``/``str``.
        secure: use HTTPS.
    """

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool = False

    @property
    def endpoint_url(self) -> str:
        """``http(s)://host:port``: how error messages name the server."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    def __repr__(self) -> str:
        return (f"S3Credentials(endpoint={self.endpoint!r}, access_key={self.access_key!r}, secret_key='***', "
                f"secure={self.secure})")

    __str__ = __repr__

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the secret key replaced by ``***`` (for messages from libraries)."""
        return text.replace(self.secret_key, "***") if self.secret_key else text


def _read_item(item: str, env: Mapping[str, str], secret_dir: Path) -> tuple[str | None, str]:
    var, filename = _ITEMS[item]
    value = env.get(var)
    if value not in (None, ""):
        return value.strip(), f"environment variable {var}"
    path = secret_dir / filename
    if path.is_file():
        return path.read_text().strip(), f"Secret file {path}"
    return None, f"environment variable {var} / Secret file {path}"


def load_s3_credentials(env: Mapping[str, str] | None = None) -> S3Credentials:
    """Read the S3 endpoint and credentials from ``env`` (default ``os.environ``) or the mounted Secret files.

    Args:
        env: environment to read (tests pass a dict).

    Returns:
        The credentials; the endpoint without scheme, ``secure`` from ``MINIO_SECURE`` or the endpoint's scheme.

    Raises:
        CredentialsError: the endpoint, access key or secret key is missing, the endpoint is not ``host:port`` or
            ``http(s)://host:port``, or ``MINIO_SECURE`` is not a boolean word; the message names the variable and
            the Secret file, never the secret.
    """
    env = os.environ if env is None else env
    secret_dir = Path(env.get("MINIO_CREDENTIALS_DIR") or DEFAULT_CREDENTIALS_DIR)
    values: dict[str, str | None] = {}
    for item in _ITEMS:
        values[item], source = _read_item(item, env, secret_dir)
        if values[item] is None and item != "secure":
            raise CredentialsError(f"S3 credentials: {item.replace('_', ' ')} not set; expected {source}")
    endpoint = str(values["endpoint"])
    secure_from_scheme = False
    if "://" in endpoint:
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
            raise CredentialsError(f"S3 credentials: endpoint {endpoint!r} (MINIO_ENDPOINT): expected host:port or "
                                   "http(s)://host:port")
        secure_from_scheme = parsed.scheme == "https"
        endpoint = parsed.netloc
    elif not endpoint or "/" in endpoint:
        raise CredentialsError(f"S3 credentials: endpoint {endpoint!r} (MINIO_ENDPOINT): expected host:port or "
                               "http(s)://host:port")
    secure = secure_from_scheme
    if values["secure"] is not None:
        word = str(values["secure"]).lower()
        if word not in _TRUE | _FALSE:
            raise CredentialsError(f"S3 credentials: MINIO_SECURE={values['secure']!r}: expected true or false")
        secure = word in _TRUE
    return S3Credentials(endpoint=endpoint, access_key=str(values["access_key"]),
                         secret_key=str(values["secret_key"]), secure=secure)
