#!/usr/bin/env python3
"""Writes payload_conformance.json: the canary body contract's vectors.

An implementation independent of the C++ one (common/payload) and of the
JavaScript one (deploy/lambda): each is checked against this file.
Body byte k of seed S is byte (k mod 8) of the little-endian encoding of
SplitMix64(S + k div 8), all arithmetic modulo 2^64.
"""
import hashlib
import json
import struct
import sys

MASK = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def body(seed, size):
    words = (size + 7) // 8
    raw = b"".join(struct.pack("<Q", splitmix64((seed + i) & MASK)) for i in range(words))
    return raw[:size]


CASES = [
    (0, 0), (0, 1), (0, 2), (1, 2), (42, 7), (42, 8), (42, 9), (7, 16),
    (7, 17), (12345, 1000), (12345, 1024), (2**64 - 1, 24),
    (0xDEADBEEF, 65536), (2**63 + 5, 100003), (99, 1048576),
]


def main():
    vectors = []
    for seed, size in CASES:
        b = body(seed, size)
        vectors.append({
            "seed": str(seed),  # Strings: JSON numbers lose 64-bit precision.
            "size": size,
            "sha256": hashlib.sha256(b).hexdigest(),
            "first16_hex": b[:16].hex(),
            "last16_hex": b[-16:].hex() if size else "",
        })
    json.dump({"description": "Canary body conformance vectors; see generate_payload_conformance.py",
               "vectors": vectors}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
