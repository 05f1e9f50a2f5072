//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `data` folded to 16 bits, added to `initial` (not complemented).
/// Sums 32-bit words into 64 bits and folds once: 2^16 ≡ 1 (mod 2^16 − 1), so the result is
/// the same as summing 16-bit words (RFC 1071 §2).
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = initial as u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = pairs.remainder() {
        acc += (*last as u64) << 8;
    }
    fold(acc)
}

fn fold(mut acc: u64) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// The checksum of `data`: the complement of its one's-complement sum.
pub fn checksum(data: &[u8]) -> u16 {
    !(sum(data, 0) as u16)
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit field changed from `old` to `new`.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = (!check as u32) + (!old as u32 & 0xffff) + new as u32;
    !(fold(acc as u64) as u16)
}

/// The new checksum after a 32-bit field (an IPv4 address) changed from `old` to `new`.
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Fix the checksum stored at `at` in `buf` for a 16-bit field that changed from `old` to `new`.
pub fn adjust16(buf: &mut [u8], at: usize, old: u16, new: u16) {
    let c = u16::from_be_bytes([buf[at], buf[at + 1]]);
    buf[at..at + 2].copy_from_slice(&update16(c, old, new).to_be_bytes());
}

/// Fix the checksum stored at `at` in `buf` for a 32-bit field that changed from `old` to `new`.
pub fn adjust32(buf: &mut [u8], at: usize, old: u32, new: u32) {
    let c = u16::from_be_bytes([buf[at], buf[at + 1]]);
    buf[at..at + 2].copy_from_slice(&update32(c, old, new).to_be_bytes());
}

/// Pseudo-header sum for TCP/UDP over IPv4.
pub fn pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    let mut acc = sum(&src, 0);
    acc = sum(&dst, acc);
    fold(acc as u64 + proto as u64 + len as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8]) -> u32 {
        let mut acc: u64 = 0;
        for (i, b) in data.iter().enumerate() {
            acc += if i % 2 == 0 {
                (*b as u64) << 8
            } else {
                *b as u64
            };
        }
        fold(acc)
    }

    #[test]
    fn word_sum_matches_the_16_bit_definition() {
        let data: Vec<u8> = (0..1500u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 2, 3, 4, 5, 7, 20, 21, 63, 64, 1499, 1500] {
            assert_eq!(sum(&data[..len], 0), reference(&data[..len]), "len {len}");
        }
        assert_eq!(sum(&[0xff; 4096], 0), 0xffff);
    }

    // RFC 1071 §3 example.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data, 0), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 192, 168, 1,
            10, 172, 31, 16, 10,
        ];
        let c = checksum(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        for ttl in [0x40u8, 0x01, 0xff, 0x00] {
            let old = u16::from_be_bytes([hdr[8], hdr[9]]);
            hdr[8] = ttl;
            let new = u16::from_be_bytes([hdr[8], hdr[9]]);
            let inc = update16(u16::from_be_bytes([hdr[10], hdr[11]]), old, new);
            hdr[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(inc, checksum(&hdr), "ttl {ttl}");
            hdr[10..12].copy_from_slice(&inc.to_be_bytes());
            assert_eq!(checksum(&hdr), 0);
        }
        let old = u32::from_be_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
        let new = u32::from_be_bytes([172, 31, 0, 30]);
        let inc = update32(u16::from_be_bytes([hdr[10], hdr[11]]), old, new);
        hdr[12..16].copy_from_slice(&new.to_be_bytes());
        hdr[10..12].copy_from_slice(&inc.to_be_bytes());
        assert_eq!(checksum(&hdr), 0);
    }
}
