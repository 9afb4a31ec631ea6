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

Masking rule (:func:`mask_secret`, :meth:`S3Credentials.mask`; every message of :mod:`evdet.data.storage`, its
retry warnings and the texts of minio / urllib3 exceptions go through it):

* a secret key shorter than :data:`MIN_SECRET_KEY_LENGTH` (8, MinIO's own minimum) is refused when the credentials
  are loaded or built (:class:`CredentialsError` naming the variable or Secret file, never the value), so a secret
  is never so short that it occurs by chance inside ordinary words;
* every occurrence of the secret (as written, and percent-encoded) is masked together with the WHOLE token around
  it: the run of characters up to the nearest whitespace, quote, bracket or one of ``, ; : = @ |`` on either side
  is replaced by ``***``. A token that merely contains the secret (``wrong-<secret>``, ``<secret>.bak``) is masked
  as a whole, so no part of it shows and the mask does not reveal where the secret starts or ends; other tokens
  are never touched;
* (for a secret below the minimum, only possible through :func:`mask_secret` directly) only tokens EQUAL to the
  secret are masked, so a short secret such as ``ab`` never garbles words like ``table``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

from evdet.data.store_errors import StoreError

__all__ = ["S3Credentials", "load_s3_credentials", "DEFAULT_CREDENTIALS_DIR", "CredentialsError", "mask_secret",
           "MIN_SECRET_KEY_LENGTH", "MASK"]

#: Where the Kubernetes Secret with the MinIO credentials is mounted unless ``MINIO_CREDENTIALS_DIR`` says otherwise.
DEFAULT_CREDENTIALS_DIR = "/var/run/secrets/evdet/minio"

_ITEMS = {  # item -> (environment variable, Secret file name)
    "endpoint": ("MINIO_ENDPOINT", "endpoint"),
    "access_key": ("MINIO_ACCESS_KEY", "access-key"),
    "secret_key": ("MINIO_SECRET_KEY", "secret-key"),
    "secure": ("MINIO_SECURE", "secure"),
}
#: Shortest secret key accepted (MinIO refuses shorter ones too); see the masking rule in the module docstring.
MIN_SECRET_KEY_LENGTH = 8
#: What a masked token becomes.
MASK = "***"
#: Characters that end a token around a secret (besides whitespace).
_TOKEN_DELIMITERS = frozenset("\"'`,;:=@|()[]{}<>")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class CredentialsError(StoreError):
    """The S3 endpoint or credentials are missing or malformed. The message names the environment variable / Secret
    file; it never contains the secret key."""


def _is_delimiter(char: str) -> bool:
    return char.isspace() or char in _TOKEN_DELIMITERS


def mask_secret(text: str, secrets: str | Iterable[str]) -> str:
    """``text`` with every token holding one of ``secrets`` replaced by :data:`MASK` (rule: module docstring).

    Args:
        text: any message (an exception text, a log line).
        secrets: one secret or several; empty ones are ignored.

    Returns:
        The masked text; unchanged when no secret occurs in it.
    """
    if not text:
        return text
    secret_list = [secrets] if isinstance(secrets, str) else list(secrets)
    forms = {form for secret in secret_list if secret for form in (secret, quote(secret, safe=""))}
    spans: list[tuple[int, int]] = []
    for form in forms:
        whole_token_only = len(form) < MIN_SECRET_KEY_LENGTH
        start = text.find(form)
        while start != -1:
            begin, end = start, start + len(form)
            if whole_token_only:
                if (begin == 0 or _is_delimiter(text[begin - 1])) and (end == len(text) or _is_delimiter(text[end])):
                    spans.append((begin, end))
            else:
                while begin > 0 and not _is_delimiter(text[begin - 1]):
                    begin -= 1
                while end < len(text) and not _is_delimiter(text[end]):
                    end += 1
                spans.append((begin, end))
            start = text.find(form, start + 1)
    if not spans:
        return text
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:  # overlapping or touching masks become one
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    out, last = [], 0
    for begin, end in merged:
        out += [text[last:begin], MASK]
        last = end
    out.append(text[last:])
    return "".join(out)


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

    def __post_init__(self) -> None:
        if len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise CredentialsError(f"S3 credentials: the secret key is shorter than {MIN_SECRET_KEY_LENGTH} "
                                   "characters; expected a longer one (MinIO's minimum; the value is not shown)")

    def __repr__(self) -> str:
        return (f"S3Credentials(endpoint={self.endpoint!r}, access_key={self.access_key!r}, secret_key='***', "
                f"secure={self.secure})")

    __str__ = __repr__

    def mask(self, text: str) -> str:
        """``text`` with every token holding the secret key replaced by ``***`` (rule: module docstring); for any
        message that may carry library text (minio / urllib3 exceptions, retry warnings)."""
        return mask_secret(text, self.secret_key)

    scrub = mask  # the earlier name


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
        CredentialsError: the endpoint, access key or secret key is missing, the secret key is shorter than
            :data:`MIN_SECRET_KEY_LENGTH`, the endpoint is not ``host:port`` or ``http(s)://host:port``, or
            ``MINIO_SECURE`` is not a boolean word; the message names the variable and the Secret file, never the
            secret.
    """
    env = os.environ if env is None else env
    secret_dir = Path(env.get("MINIO_CREDENTIALS_DIR") or DEFAULT_CREDENTIALS_DIR)
    values: dict[str, str | None] = {}
    for item in _ITEMS:
        values[item], source = _read_item(item, env, secret_dir)
        if values[item] is None and item != "secure":
            raise CredentialsError(f"S3 credentials: {item.replace('_', ' ')} not set; expected {source}")
        if item == "secret_key" and len(str(values[item])) < MIN_SECRET_KEY_LENGTH:
            raise CredentialsError(f"S3 credentials: the secret key from {source} is shorter than "
                                   f"{MIN_SECRET_KEY_LENGTH} characters; expected at least {MIN_SECRET_KEY_LENGTH} "
                                   "(MinIO's minimum; the value is not shown)")
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
