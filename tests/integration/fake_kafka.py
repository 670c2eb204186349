"""A loopback server that speaks just enough of the Kafka protocol for kafka-python to
authenticate: ApiVersions, SaslHandshake, SaslAuthenticate (PLAIN, SCRAM-SHA-256/512, checked
as a broker checks them) and Metadata (itself as the only broker, no topics). Optionally TLS.

The embedded test broker refuses SASL, so this is what drives the client's real SASL code
path (and its real log records) in tests. Requests are decoded and responses encoded with
kafka-python's own protocol classes; what it does not know, it answers by closing the
connection, as a broker does with a request it does not expect before authentication.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kafka.protocol.metadata import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    MetadataRequest,
    MetadataResponse,
)
from kafka.protocol.sasl import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

# What a Kafka 2.8 broker announces (api key: (min, max)): clients pick their versions from it.
API_VERSIONS = {0: (0, 9), 1: (0, 12), 2: (0, 6), 3: (0, 11), 4: (0, 5), 5: (0, 3), 6: (0, 7),
                7: (0, 3), 8: (0, 8), 9: (0, 7), 10: (0, 3), 11: (0, 7), 12: (0, 4), 13: (0, 4),
                14: (0, 5), 15: (0, 5), 16: (0, 4), 17: (0, 1), 18: (0, 3), 19: (0, 7),
                20: (0, 6), 21: (0, 2), 22: (0, 4), 23: (0, 4), 24: (0, 3), 25: (0, 3),
                26: (0, 3), 27: (0, 1), 28: (0, 3), 29: (0, 2), 30: (0, 2), 31: (0, 2),
                32: (0, 4), 33: (0, 2), 34: (0, 2), 35: (0, 2), 36: (0, 2), 37: (0, 3),
                42: (0, 2), 43: (0, 2), 44: (0, 1)}  # fmt: skip
MAX_FRAME = 100 * 1024 * 1024  # a TLS ClientHello read as a size is far beyond this
# A broker closes the connection this long after refusing an authentication (its
# connection.failed.authentication.delay.ms): the client reads the refusal first.
FAILED_AUTHENTICATION_DELAY = 0.1
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58
SCRAM_ITERATIONS = 4096
SCRAM_HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}


@dataclass
class FakeKafka:
    """``users`` maps user names to passwords; ``mechanisms`` are the enabled SASL mechanisms
    (none: a PLAINTEXT listener); ``tls`` a server context (SSL / SASL_SSL listener).
    ``events`` records what happened, one line each (``auth ok alice PLAIN``...)."""

    users: dict[str, str] = field(default_factory=dict)
    mechanisms: Sequence[str] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    tls: ssl.SSLContext | None = None
    events: list[str] = field(default_factory=list)
    port: int = 0
    _server: socket.socket | None = None
    _conns: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeKafka:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        server.settimeout(0.1)
        self._server, self.port = server, int(server.getsockname()[1])
        threading.Thread(target=self._accept, name="fake-kafka", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> FakeKafka:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.events.append(f"tls handshake failed: {exc}")
                    return
                self._conns.append(conn)
            _Session(self, conn).run()
        except (OSError, EOFError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()


class _Closed(Exception):
    pass


class _Session:
    """One client connection: requests in, responses out, until one is not acceptable."""

    def __init__(self, server: FakeKafka, conn: socket.socket) -> None:
        self.server, self.conn = server, conn
        self.mechanism = ""
        self.authenticated = not server.mechanisms
        self.scram: _ScramServer | None = None

    def run(self) -> None:
        while True:
            try:
                payload = self._read_frame()
            except _Closed:
                return
            api_key, version = struct.unpack(">hh", payload[:4])
            response = self._answer(api_key, version, payload)
            if response is None:
                self.server.events.append(f"closed on api key {api_key} v{version}")
                return
            self.conn.sendall(bytes(response[0]))
            if response[1]:  # a failed authentication: closed after a delay, as a broker does
                time.sleep(FAILED_AUTHENTICATION_DELAY)
                return

    def _read_frame(self) -> bytes:
        head = self._read(4)
        (size,) = struct.unpack(">i", head)
        if not 0 < size <= MAX_FRAME:  # e.g. a TLS ClientHello on a plaintext listener
            self.server.events.append(f"invalid frame size {size}")
            raise _Closed
        return self._read(size)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            if not chunk:
                raise _Closed
            data += chunk
        return data

    def _answer(self, api_key: int, version: int, payload: bytes) -> tuple[Any, bool] | None:
        """The framed response and whether to close after it; None: close now."""
        if api_key == 18:
            request = ApiVersionsRequest.decode(payload, version=version, header=True)
            keys = [(k, lo, hi) for k, (lo, hi) in sorted(API_VERSIONS.items())]
            return _frame(ApiVersionsResponse(version=version, error_code=0, api_keys=keys,
                                              throttle_time_ms=0), request), False  # fmt: skip
        if api_key == 17:
            request = SaslHandshakeRequest.decode(payload, version=version, header=True)
            enabled = list(self.server.mechanisms)
            ok = request.mechanism in enabled
            self.mechanism = request.mechanism if ok else ""
            self.server.events.append(f"handshake {request.mechanism} {'ok' if ok else 'refused'}")
            code = 0 if ok else UNSUPPORTED_SASL_MECHANISM
            return _frame(SaslHandshakeResponse(version=version, error_code=code,
                                                mechanisms=enabled), request), not ok  # fmt: skip
        if api_key == 36 and self.mechanism:
            request = SaslAuthenticateRequest.decode(payload, version=version, header=True)
            return self._authenticate(request, version)
        if api_key == 3 and self.authenticated:
            request = MetadataRequest.decode(payload, version=version, header=True)
            host, port = self.conn.getsockname()[:2]
            response = MetadataResponse(
                version=version, throttle_time_ms=0, brokers=[(0, host, port, None)],
                cluster_id="fake", controller_id=0, topics=[],
            )  # fmt: skip
            return _frame(response, request), False
        return None

    def _authenticate(self, request: Any, version: int) -> tuple[Any, bool]:
        token: bytes = bytes(request.auth_bytes)
        error, reply = "", b""
        if self.mechanism == "PLAIN":
            _, user, password = (token.split(b"\0") + [b"", b""])[:3]
            name = user.decode(errors="replace")
            if self.server.users.get(name, "\0").encode() == password:
                self.authenticated = True
            else:
                error = "Authentication failed: Invalid username or password"
        else:
            if self.scram is None:
                self.scram = _ScramServer(self.mechanism, self.server.users)
            try:
                reply, self.authenticated = self.scram.step(token)
            except ValueError as exc:
                error = f"Authentication failed during authentication due to: {exc}"
        outcome = "ok" if self.authenticated else ("failed" if error else "continue")
        self.server.events.append(f"auth {outcome} {self.mechanism}")
        response = SaslAuthenticateResponse(
            version=version, error_code=SASL_AUTHENTICATION_FAILED if error else 0,
            error_message=error or None, auth_bytes=reply, session_lifetime_ms=0,
        )  # fmt: skip
        return _frame(response, request), bool(error)


def _frame(response: Any, request: Any) -> Any:
    response.with_header(correlation_id=request.header.correlation_id)
    return response.encode(header=True, framed=True)


class _ScramServer:
    """The broker's side of RFC 5802 for one connection: two steps, the proof checked."""

    def __init__(self, mechanism: str, users: dict[str, str]) -> None:
        self.hash = SCRAM_HASHES[mechanism]
        self.users = users
        self.first_bare = self.server_first = b""
        self.user = ""

    def step(self, token: bytes) -> tuple[bytes, bool]:
        if not self.server_first:
            self.first_bare = token.split(b",", 2)[2]  # after the GS2 header "n,,"
            fields = dict(f.split(b"=", 1) for f in self.first_bare.split(b","))
            self.user = fields[b"n"].decode()
            nonce = fields[b"r"] + base64.b64encode(os.urandom(18))
            self.salt = os.urandom(16)
            self.server_first = b"r=%s,s=%s,i=%d" % (
                nonce, base64.b64encode(self.salt), SCRAM_ITERATIONS,
            )  # fmt: skip
            return self.server_first, False
        without_proof, _, proof = token.rpartition(b",p=")
        auth_message = b",".join((self.first_bare, self.server_first, without_proof))
        password = self.users.get(self.user)
        if password is None:
            raise ValueError("Invalid user credentials")
        salted = hashlib.pbkdf2_hmac(
            self.hash().name, password.encode(), self.salt, SCRAM_ITERATIONS
        )
        client_key = self._hmac(salted, b"Client Key")
        stored_key = self.hash(client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        proof_bytes = base64.b64decode(proof)
        if len(proof_bytes) != len(signature):
            raise ValueError("Invalid user credentials")
        claimed = bytes(a ^ b for a, b in zip(proof_bytes, signature, strict=True))
        if self.hash(claimed).digest() != stored_key:
            raise ValueError("Invalid user credentials")
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return b"v=" + base64.b64encode(server_signature), True

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash).digest()


@dataclass(frozen=True)
class Certificates:
    """A CA and a server certificate for 127.0.0.1 / localhost it signed, as PEM files."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificates(folder: Path, name: str = "test") -> Certificates:
    """A fresh self-signed CA and a server certificate signed by it, in ``folder``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(timezone.utc)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate(f"{name} CA", ca_key, f"{name} CA", ca_key, True)
    server_cert = certificate("127.0.0.1", server_key, f"{name} CA", ca_key, False)
    pem = serialization.Encoding.PEM
    files = Certificates(folder / f"{name}-ca.pem", folder / f"{name}-cert.pem",
                         folder / f"{name}-key.pem")  # fmt: skip
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.cert.write_bytes(server_cert.public_bytes(pem))
    files.key.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


@contextlib.contextmanager
def fake_kafka(**kwargs: Any) -> Iterator[FakeKafka]:
    server = FakeKafka(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
