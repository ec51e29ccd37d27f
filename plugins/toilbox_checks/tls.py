"""check.tls: the time left before a certificate expires, whether it is trusted and matches.

The certificate is the one a TLS server at host:port presents, or the first in a PEM file.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

import toilbox
from toilbox.units import ConfigPath, Duration, ExplicitDuration
from toilbox_checks.levels import age, check_order, endpoint, level
from toilbox_checks.tcp import connect_error
from toilbox_checks.trust import system_trust

if TYPE_CHECKING:
    from cryptography import x509

    from toilbox.tasktypes import RegisterTaskType

# OpenSSL's X509_V_ERR_ codes: HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH; CERT_NOT_YET_VALID,
# CERT_HAS_EXPIRED.
_NAME_ERRORS = (62, 64)
_DATE_ERRORS = (9, 10)
DAY = 86400


class Params(BaseModel):
    # Built on first use: start-up pays only for the task types a config uses.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    host: str | None = Field(default=None, description="a TLS server to connect to")
    port: int = Field(default=443, ge=1, le=65535, description="the server's port")
    file: ConfigPath | None = Field(default=None, description="a PEM file instead of a server")
    server_name: str | None = Field(
        default=None, description="name sent (SNI) and matched; default: host"
    )
    # A unit is required: "warning: 30" would otherwise be 30 seconds, not 30 days.
    warning: ExplicitDuration = Field(default="30d", validate_default=True, description="time left")
    critical: ExplicitDuration = Field(default="7d", validate_default=True, description="time left")
    verify: bool = Field(default=True, description="check trust and name, not only the dates")
    ca_file: ConfigPath | None = Field(
        default=None, description="PEM CA bundle instead of the system's"
    )
    timeout: Duration = Field(
        default="10s", validate_default=True, gt=0,
        description="for the connection and the handshake",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Params:
        if (self.host is None) == (self.file is None):
            raise ValueError("set either host (and port) or file, not both")
        if self.file is not None and self.ca_file is not None:
            raise ValueError("ca_file verifies a server's chain; a file's chain is not verified")
        if self.ca_file is not None and not self.verify:
            raise ValueError("ca_file is used to verify: drop it or set verify: true")
        check_order(self.warning, self.critical, lower_is_worse=True)
        return self


def run(ctx: toilbox.TaskContext, params: Params) -> toilbox.Result:
    """Days until a certificate expires; an untrusted or mismatched one is CRITICAL."""
    if params.file is not None:
        return _from_file(ctx, params, params.file)
    return _from_server(ctx, params, params.host or "")  # the validator wants host or file


def _from_file(ctx: toilbox.TaskContext, params: Params, path: Path) -> toilbox.Result:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        return _critical(f"cannot read {path}: {exc.strerror or exc}", params)
    except ValueError:
        return _critical(f"{path} holds no PEM certificate", params)
    problems = []
    if params.server_name is not None and not _names_match(cert, params.server_name):
        problems.append(f"not valid for {params.server_name}")
    return _verdict(ctx, params, cert, str(path), problems, verified=False)


def _from_server(ctx: toilbox.TaskContext, params: Params, host: str) -> toilbox.Result:
    from cryptography import x509

    source = endpoint(host, params.port)
    server_name = params.server_name or host
    problems = []
    verified = params.verify
    try:
        try:
            der = _handshake(params, host, server_name, _verifying_context(params))
        except ssl.SSLCertVerificationError as exc:
            verified = False
            # Read the certificate all the same, so the summary and the metric give its dates.
            der = _handshake(params, host, server_name, _reading_context())
            cert = x509.load_der_x509_certificate(der)
            if exc.verify_code in _NAME_ERRORS or not _names_match(cert, server_name):
                problems.append(f"not valid for {server_name}")
            if exc.verify_code not in (*_NAME_ERRORS, *_DATE_ERRORS):  # dates speak for themselves
                problems.append(f"not trusted: {exc.verify_message}")
    except ssl.SSLError as exc:
        reason = exc.reason.replace("_", " ").lower() if exc.reason else str(exc)
        return _critical(f"TLS handshake with {source} failed: {reason}", params)
    except OSError as exc:
        reason = connect_error(exc, params.timeout)
        return _critical(f"cannot connect to {source}: {reason}", params)
    cert = x509.load_der_x509_certificate(der)
    return _verdict(ctx, params, cert, source, problems, verified=verified)


def preload() -> None:
    """Run once by the daemon's zygote: cryptography's x509 (30 ms of imports) and the
    system's trust store (20 ms), which every check.tls would load again."""
    from cryptography import x509  # noqa: F401 -- imported for the checks to inherit

    system_trust()


run.preload = preload  # type: ignore[attr-defined]


def _verifying_context(params: Params) -> ssl.SSLContext:
    if not params.verify:
        return _reading_context()
    try:
        if params.ca_file is None:
            return system_trust()
        return ssl.create_default_context(cafile=params.ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise toilbox.TaskFailed(f"cannot load ca_file {params.ca_file}: {reason}") from exc


def _reading_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to read the certificate's dates
    return context


def _handshake(params: Params, host: str, server_name: str, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection((host, params.port), timeout=params.timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return der


def _verdict(
    ctx: toilbox.TaskContext,
    params: Params,
    cert: x509.Certificate,
    source: str,
    problems: list[str],
    *,
    verified: bool,
) -> toilbox.Result:
    """The verdict on a certificate; ``verified``: trusted and matching, by a TLS handshake."""
    not_before, not_after = _validity(cert)
    now = ctx.now()
    left = (not_after - now).total_seconds()
    if left <= 0:
        when = f"expired {age(-left)} ago ({not_after:%Y-%m-%d})"
    else:
        when = f"expires in {age(left)} ({not_after:%Y-%m-%d})"
    if not_before > now:
        problems.append(f"not valid before {not_before:%Y-%m-%d %H:%M} UTC")
    status = level(critical=left <= params.critical, warning=left <= params.warning)
    if problems:
        status = toilbox.worst(status, toilbox.Status.CRITICAL)
    subject = cert.subject.rfc4514_string() or "no subject"
    summary = "; ".join([f"certificate of {source} ({subject}) {when}", *problems])
    days = round(left / DAY, 2)
    metrics: dict[str, toilbox.Metric | float] = {
        # The time left runs down towards the thresholds: alert below them.
        "days_left": toilbox.Metric.below(
            days, "d", warn=round(params.warning / DAY, 4), crit=round(params.critical / DAY, 4)
        ),
    }
    data: dict[str, Any] = {
        "subject": subject,
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "names": _names(cert),
        "verified": verified,
    }
    ctx.log.debug("tls.read", source=source, not_after=not_after.isoformat(), problems=problems)
    return toilbox.Result(status, summary, metrics, data)


def _critical(reason: str, params: Params) -> toilbox.Result:
    return toilbox.Result(
        toilbox.Status.CRITICAL,
        reason,
        data={
            "host": params.host,
            "port": params.port,
            "file": str(params.file) if params.file else None,
            "error": reason,
        },
    )


def _validity(cert: x509.Certificate) -> tuple[datetime, datetime]:
    try:
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    except AttributeError:  # cryptography < 42 has only the naive UTC datetimes
        return cert.not_valid_before.replace(tzinfo=UTC), cert.not_valid_after.replace(tzinfo=UTC)


def _names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses in the subjectAltName extension."""
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = sans.get_values_for_type(x509.DNSName)
    return names + [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


def _names_match(cert: x509.Certificate, server_name: str) -> bool:
    """RFC 6125 matching against subjectAltName: a wildcard stands for one whole left label."""
    names = _names(cert)
    try:
        return str(ipaddress.ip_address(server_name)) in names
    except ValueError:
        pass  # a host name
    wanted = server_name.rstrip(".").lower()
    for name in names:
        pattern = name.rstrip(".").lower()
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            label, rest = wanted.split(".", 1)
            if label and rest == pattern[2:] and "." in rest:
                return True
    return False


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("check.tls", run, params=Params)
