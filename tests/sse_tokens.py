"""Signed test tokens (JWS compact form) for the token tests: HS256 with the
standard library, RS256 and ES256 with the openssl command line, so the
suite needs no Python JWT package."""
import base64
import hashlib
import hmac
import json
import subprocess
from pathlib import Path


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def make_keys(directory: Path):
    """Writes hs.secret, rs.key/rs.pub (RSA 2048), ec.key/ec.pub (P-256)
    and other.secret; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / 'hs.secret').write_text('0123456789abcdef0123456789abcdef-test-secret\n')
    (directory / 'other.secret').write_text('another-secret-another-secret-another-secret\n')
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run('openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048',
        '-out', str(directory / 'rs.key'))
    run('openssl', 'pkey', '-in', str(directory / 'rs.key'), '-pubout', '-out', str(directory / 'rs.pub'))
    run('openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-out', str(directory / 'ec.key'))
    run('openssl', 'pkey', '-in', str(directory / 'ec.key'), '-pubout', '-out', str(directory / 'ec.pub'))
    return directory


def _der_ecdsa_to_raw(der: bytes) -> bytes:
    """ECDSA-Sig-Value (SEQUENCE of two INTEGERs) to the 64-byte R||S of JWS."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b''
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b'\0')
        out += v.rjust(32, b'\0')
        i += 2 + n
    return out


def sign(alg, key_file, claims, header=None):
    """A compact token over claims (a dict, or raw bytes for malformed ones)."""
    h = dict(header or {'alg': alg, 'typ': 'JWT'})
    head = b64url(json.dumps(h, separators=(',', ':')).encode())
    body = claims if isinstance(claims, bytes) else json.dumps(claims, separators=(',', ':')).encode()
    signing_input = '%s.%s' % (head, b64url(body))
    if alg == 'none':
        return signing_input + '.'
    if alg == 'HS256':
        secret = Path(key_file).read_bytes().rstrip(b'\r\n')
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    else:
        der = subprocess.run(['openssl', 'dgst', '-sha256', '-sign', str(key_file)],
                             input=signing_input.encode(), capture_output=True, check=True).stdout
        sig = der if alg == 'RS256' else _der_ecdsa_to_raw(der)
    return signing_input + '.' + b64url(sig)
