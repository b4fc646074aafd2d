#!/usr/bin/env python3
"""Derives the two GFNI matrices of the gateway's SM4 S-box (operator/gateway/src/sm4_fast.rs).

SM4's S-box (GB/T 32907) is S(x) = A·inv_f(A·x + C) + C, with inversion in GF(2^8) modulo
f = x^8+x^7+x^6+x^5+x^4+x^2+1 (0x1f5), A a circulant bit matrix and C = 0xd3. With φ the
field isomorphism from that field onto AES's (modulo 0x11b), inv_f = φ⁻¹·inv_AES·φ, so

    S(x) = (A·φ⁻¹)·inv_AES((φ·A)·x + φ·C) + C

which is GF2P8AFFINEQB(x, φ·A, φ·C) followed by GF2P8AFFINEINVQB(·, A·φ⁻¹, C). The script
finds A and φ, checks the composition against the S-box table of the `sm4` crate for all
256 inputs, and prints the matrices in the instructions' encoding (byte 7-i of the qword is
the row of output bit i).

    python3 hack/sm4-gfni-matrices.py [path/to/sm4/src/consts.rs]
"""
import glob
import os
import re
import sys


def sbox(path):
    src = open(path).read()
    body = src[src.index("SBOX"):]
    body = body[body.index("["):body.index("];")]
    table = [int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]{2})\b", body)][:256]
    assert len(table) == 256, "no S-box in " + path
    return table


def gmul(a, b, poly):
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= poly
    return r


def inverses(poly):
    inv = [0] * 256
    for x in range(1, 256):
        for y in range(1, 256):
            if gmul(x, y, poly) == 1:
                inv[x] = y
                break
    return inv


def apply(rows, x):
    """Bit i of the result is the parity of rows[i] & x."""
    return sum((bin(rows[i] & x).count("1") & 1) << i for i in range(8))


def matrix(f):
    """The rows of the linear map f."""
    cols = [f(1 << j) for j in range(8)]
    return [sum(((cols[j] >> i) & 1) << j for j in range(8)) for i in range(8)]


def qword(rows):
    return sum(rows[i] << (8 * (7 - i)) for i in range(8))


def main():
    paths = sys.argv[1:] or sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/sm4-0.6*/src/consts.rs")))
    if not paths:
        sys.exit("give the path of the sm4 crate's src/consts.rs")
    S = sbox(paths[-1])
    f, C = 0x1F5, 0xD3
    inv_f, inv_aes = inverses(f), inverses(0x11B)
    # A: the circulant whose row for output bit 0 is 0xa7, each next row rotated left by one.
    A = [(((0xA7 << i) | (0xA7 >> (8 - i))) & 0xFF) for i in range(8)]
    assert all(apply(A, inv_f[apply(A, x) ^ C]) ^ C == S[x] for x in range(256)), "A, C, f do not give the S-box"
    for beta in range(2, 256):
        powers = [1]
        for _ in range(7):
            powers.append(gmul(powers[-1], beta, 0x11B))

        def phi(x, powers=powers):
            v = 0
            for j in range(8):
                if (x >> j) & 1:
                    v ^= powers[j]
            return v

        if not all(phi(inv_f[z]) == inv_aes[phi(z)] for z in range(256)):
            continue
        back = {phi(z): z for z in range(256)}
        pre, pre_c = matrix(lambda x: phi(apply(A, x))), phi(C)
        post, post_c = matrix(lambda y: apply(A, back[y])), C
        assert all(apply(post, inv_aes[apply(pre, x) ^ pre_c]) ^ post_c == S[x] for x in range(256))
        print("PRE  = 0x%016x, PRE_C  = 0x%02x" % (qword(pre), pre_c))
        print("POST = 0x%016x, POST_C = 0x%02x" % (qword(post), post_c))
        print("checked against the S-box for all 256 inputs")
        return
    sys.exit("no field isomorphism found")


main()
