"""Test vectors for privpkt's SecAgg+ node, from flwr's own implementation.

Run with the flwr venv the e2e tests use (flwr 1.40.0, pycryptodome, cryptography, numpy):

    target/flwr-venv-1.40.0/bin/python crates/flower/tests/vectors/secaggplus_vectors.py > crates/flower/tests/vectors/secaggplus.json

Everything random on the Python side is fixed here (Shamir's coefficients, Fernet's IV and
time), so the Rust side can reproduce each value byte for byte.
"""

import base64
import json

import Crypto.Protocol.SecretSharing as ss
import numpy as np
from cryptography.fernet import Fernet
from flwr.common.secure_aggregation.crypto import shamir
from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
from flwr.common.secure_aggregation.quantization import dequantize
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen, share_keys_plaintext_concat
from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key, generate_key_pairs, private_key_to_bytes, public_key_to_bytes
import flwr

hexs = lambda b: b.hex()

# Key agreement and derivation: two fixed SECP384R1 key pairs.
sk_a, pk_a = generate_key_pairs()
sk_b, pk_b = generate_key_pairs()
sk_a_pem, pk_a_pem = private_key_to_bytes(sk_a), public_key_to_bytes(pk_a)
sk_b_pem, pk_b_pem = private_key_to_bytes(sk_b), public_key_to_bytes(pk_b)
shared = generate_shared_key(bytes_to_private_key(sk_a_pem), bytes_to_public_key(pk_b_pem))
assert shared == generate_shared_key(bytes_to_private_key(sk_b_pem), bytes_to_public_key(pk_a_pem))

# Fernet with a fixed IV and time.
plaintext = share_keys_plaintext_concat(7, 2**63 + 5, b"\x01" * 52, b"\x02" * 324)
token = Fernet(shared)._encrypt_from_parts(plaintext, 1_700_000_000, b"\x0f" * 16)

# Shamir: pycryptodome's coefficients replaced by a fixed stream.
stream = iter(bytes((i * 37 + 11) % 256 for i in range(16 * 64)))
ss.rng = lambda n: bytes(next(stream) for _ in range(n))
secret = bytes(range(32))
shares = shamir.create_shares(secret, 3, 5)
assert shamir.combine_shares(shares[1:4]) == secret

# The mask generator: numpy's legacy MT19937 through flwr's seed folding.
masks = pseudo_rand_gen(shared, 2**32, [(1,), (2, 3), (4,)])
small = pseudo_rand_gen(b"\x01\x02\x03\x04" * 8, 2**20, [(5,)])

print(json.dumps({
    "flwr": flwr.__version__,
    "sk_a_pem": sk_a_pem.decode(), "pk_a_pem": pk_a_pem.decode(),
    "sk_b_pem": sk_b_pem.decode(), "pk_b_pem": pk_b_pem.decode(),
    "shared_key": shared.decode(),
    "plaintext": hexs(plaintext), "fernet_time": 1_700_000_000, "fernet_iv": hexs(b"\x0f" * 16), "token": token.decode(),
    "shamir_secret": hexs(secret), "shamir_coeff_stream": hexs(bytes((i * 37 + 11) % 256 for i in range(16 * 64))),
    "shamir_threshold": 3, "shamir_shares": [hexs(s) for s in shares],
    "masks": [m.tolist() for m in masks], "masks_small": [m.tolist() for m in small],
    "dequantize_example": [a.tolist() for a in dequantize([np.array([0, 2**21, 2**22])], 8.0, 2**22)],
}, indent=1))
