//! X25519 with the base point: a CURVE public key from its secret key.
//!
//! libzmq computes this (`zmq_curve_public`), but the `zmq` crate does not
//! expose it and this crate has no `unsafe`. So that a role needs only its
//! secret key (one Z85 line in a file, as `lhcluster keygen` writes it),
//! the public half is derived here: TweetNaCl's `crypto_scalarmult`
//! (public domain), transcribed limb for limb. It runs once per role start,
//! on the role's own key; the tests hold it to libsodium's key pairs.

type Gf = [i64; 16];

const A24: Gf = [0xDB41, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn carry(o: &mut Gf) {
    for i in 0..16 {
        o[i] += 1 << 16;
        let c = o[i] >> 16;
        if i < 15 {
            o[i + 1] += c - 1;
        } else {
            o[0] += 38 * (c - 1);
        }
        o[i] -= c << 16;
    }
}

/// Swaps `p` and `q` when `b` is 1, without a branch on it.
fn select(p: &mut Gf, q: &mut Gf, b: i64) {
    let c = !(b - 1);
    for i in 0..16 {
        let t = c & (p[i] ^ q[i]);
        p[i] ^= t;
        q[i] ^= t;
    }
}

fn pack(n: &Gf) -> [u8; 32] {
    let mut t = *n;
    carry(&mut t);
    carry(&mut t);
    carry(&mut t);
    for _ in 0..2 {
        let mut m = [0i64; 16];
        m[0] = t[0] - 0xffed;
        for i in 1..15 {
            m[i] = t[i] - 0xffff - ((m[i - 1] >> 16) & 1);
            m[i - 1] &= 0xffff;
        }
        m[15] = t[15] - 0x7fff - ((m[14] >> 16) & 1);
        let b = (m[15] >> 16) & 1;
        m[14] &= 0xffff;
        select(&mut t, &mut m, 1 - b);
    }
    let mut o = [0u8; 32];
    for i in 0..16 {
        o[2 * i] = (t[i] & 0xff) as u8;
        o[2 * i + 1] = ((t[i] >> 8) & 0xff) as u8;
    }
    o
}

fn add(a: &Gf, b: &Gf) -> Gf {
    std::array::from_fn(|i| a[i] + b[i])
}

fn sub(a: &Gf, b: &Gf) -> Gf {
    std::array::from_fn(|i| a[i] - b[i])
}

fn mul(a: &Gf, b: &Gf) -> Gf {
    let mut t = [0i64; 31];
    for i in 0..16 {
        for j in 0..16 {
            t[i + j] += a[i] * b[j];
        }
    }
    for i in 0..15 {
        t[i] += 38 * t[i + 16];
    }
    let mut o: Gf = std::array::from_fn(|i| t[i]);
    carry(&mut o);
    carry(&mut o);
    o
}

fn square(a: &Gf) -> Gf {
    mul(a, a)
}

fn invert(i: &Gf) -> Gf {
    let mut c = *i;
    for a in (0..=253).rev() {
        c = square(&c);
        if a != 2 && a != 4 {
            c = mul(&c, i);
        }
    }
    c
}

/// The X25519 public key of secret key `n`.
pub(crate) fn public_key(n: &[u8; 32]) -> [u8; 32] {
    let mut z = *n;
    z[31] = (n[31] & 127) | 64;
    z[0] &= 248;
    let mut x: Gf = [0; 16];
    x[0] = 9; // the base point
    let (mut a, mut b, mut c, mut d): (Gf, Gf, Gf, Gf) = ([0; 16], x, [0; 16], [0; 16]);
    a[0] = 1;
    d[0] = 1;
    for i in (0..=254usize).rev() {
        let r = i64::from((z[i >> 3] >> (i & 7)) & 1);
        select(&mut a, &mut b, r);
        select(&mut c, &mut d, r);
        let mut e = add(&a, &c);
        a = sub(&a, &c);
        c = add(&b, &d);
        b = sub(&b, &d);
        d = square(&e);
        let f = square(&a);
        a = mul(&c, &a);
        c = mul(&b, &e);
        e = add(&a, &c);
        a = sub(&a, &c);
        b = square(&a);
        c = sub(&d, &f);
        a = mul(&c, &A24);
        a = add(&a, &d);
        c = mul(&c, &a);
        a = mul(&d, &f);
        d = mul(&b, &x);
        b = square(&e);
        select(&mut a, &mut b, r);
        select(&mut c, &mut d, r);
    }
    pack(&mul(&a, &invert(&c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7748_test_vector() {
        // RFC 7748 §6.1: Alice's private key and public key.
        let secret: [u8; 32] =
            hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(public_key(&secret), public);
    }

    #[test]
    fn agrees_with_libsodium_key_pairs() {
        for _ in 0..20 {
            let pair = zmq::CurveKeyPair::new().expect("CURVE is built in");
            assert_eq!(public_key(&pair.secret_key), pair.public_key);
        }
    }

    fn hex(s: &str) -> [u8; 32] {
        std::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
    }
}
