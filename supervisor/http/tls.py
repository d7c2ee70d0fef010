"""The TLS context built from the ``--ssl-*`` settings.

The master builds it once before the database step (and ``supervise check``
does too), so a missing file, a key that does not match its certificate or a
wrong password stops the start in one line; each worker then builds its own
from the same files, so a reload (HUP) picks up renewed certificates.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from supervisor.errors import ConfigError

if TYPE_CHECKING:
    from supervisor.settings.config import Config

_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def enabled(cfg: Config) -> bool:
    return bool(cfg.ssl_certfile)


def context(cfg: Config) -> ssl.SSLContext | None:
    """The server context, or None without --ssl-certfile; ConfigError (one
    line, never the password) when it cannot be built."""
    if not cfg.ssl_certfile:
        given = [
            flag
            for flag, value in (
                ("--ssl-keyfile", cfg.ssl_keyfile),
                ("--ssl-keyfile-password-file", cfg.ssl_keyfile_password_file),
                ("--ssl-ca-certs", cfg.ssl_ca_certs),
                ("--ssl-ciphers", cfg.ssl_ciphers),
                ("--ssl-cert-reqs", cfg.ssl_cert_reqs != "none"),
            )
            if value
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} without --ssl-certfile: HTTPS needs a certificate")
        return None
    if cfg.ssl_cert_reqs != "none" and not cfg.ssl_ca_certs:
        raise ConfigError(
            f"--ssl-cert-reqs {cfg.ssl_cert_reqs} needs --ssl-ca-certs to verify clients against"
        )
    secret = password(cfg.ssl_keyfile_password_file)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # older versions are broken; no option to allow them
    files = f"--ssl-certfile {cfg.ssl_certfile}"
    if cfg.ssl_keyfile:
        files += f" / --ssl-keyfile {cfg.ssl_keyfile}"
    try:
        # a callable even without a password file: OpenSSL would otherwise
        # prompt on the terminal for an encrypted key
        ctx.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile, lambda: secret)
    except OSError as exc:
        reason = _reason(exc)
        if isinstance(exc, ssl.SSLError) and _encrypted(cfg.ssl_keyfile or cfg.ssl_certfile):
            reason = "the key is encrypted and the password is wrong or missing (--ssl-keyfile-password-file)"
        raise ConfigError(f"cannot use {files}: {reason}") from None
    ctx.verify_mode = _VERIFY[cfg.ssl_cert_reqs]
    if cfg.ssl_ca_certs:
        try:
            ctx.load_verify_locations(cfg.ssl_ca_certs)
        except OSError as exc:
            raise ConfigError(f"cannot use --ssl-ca-certs {cfg.ssl_ca_certs}: {_reason(exc)}") from None
    if cfg.ssl_ciphers:
        try:
            ctx.set_ciphers(cfg.ssl_ciphers)
        except ssl.SSLError:
            raise ConfigError(f"--ssl-ciphers {cfg.ssl_ciphers!r} selects no cipher OpenSSL knows") from None
    return ctx


def password(path: str | None) -> bytes:
    """The first line of --ssl-keyfile-password-file (b'' without one)."""
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            return f.readline().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read --ssl-keyfile-password-file {path}: {exc.strerror}") from None


def _encrypted(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return b"ENCRYPTED" in f.read(1 << 20)
    except OSError:
        return False


def _reason(exc: OSError) -> str:
    if not isinstance(exc, ssl.SSLError):
        return exc.strerror or str(exc)
    if exc.reason == "KEY_VALUES_MISMATCH":
        return "the key does not match the certificate"
    if exc.reason in (None, "PEM_LIB", "NO_START_LINE") or "PEM lib" in str(exc):
        return "not a PEM certificate and private key"
    return str(exc.reason).lower().replace("_", " ")
