//! Short hash naming the generated runtime-config Secret `<app>-<hash>`.
//!
//! Upstream names the Secret with the Adler-32 checksum of the rendered TOML in lower-case hex
//! (`fmt.Sprintf("%s-%x", ...)`, no zero padding). Using the same checksum over byte-identical
//! TOML gives the same Secret name, so the Deployment's volume does not change and pods do not
//! roll when a cluster switches operators. Adler-32 is not collision resistant, but the name only
//! has to change when the content does; it is not a security boundary.

/// Adler-32 of `data` (RFC 1950).
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    // 5552 is the largest n with 255n(n+1)/2 + (n+1)(MOD-1) < 2^32: reduce once per block.
    const BLOCK: usize = 5552;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(BLOCK) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Lower-case hex hash of the rendered runtime config, as upstream names its Secret.
pub fn runtime_config_hash(toml: &[u8]) -> String {
    format!("{:x}", adler32(toml))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_known_vectors() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"a"), 0x0062_0062);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // Longer than one reduction block.
        let long = vec![0xffu8; 100_000];
        let naive = {
            let (mut a, mut b) = (1u64, 0u64);
            for &x in &long {
                a = (a + u64::from(x)) % 65_521;
                b = (b + a) % 65_521;
            }
            ((b << 16) | a) as u32
        };
        assert_eq!(adler32(&long), naive);
    }

    #[test]
    fn hash_is_unpadded_lower_hex() {
        assert_eq!(runtime_config_hash(b"a"), "620062");
        assert_eq!(runtime_config_hash(b"Wikipedia"), "11e60398");
    }
}
