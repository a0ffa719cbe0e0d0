//! Kubernetes resource quantities (`128Mi`, `250m`, `1.5G`, `1e3`), parsed exactly.
//!
//! k8s-openapi's `Quantity` is only a string, so the rules parse the apiserver's grammar
//! themselves:
//!
//! ```text
//! quantity        ::= signedNumber suffix
//! signedNumber    ::= ["+" | "-"] number
//! number          ::= digits | digits "." digits | digits "." | "." digits
//! suffix          ::= binarySI | decimalExponent | decimalSI
//! binarySI        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! decimalSI       ::= n | u | m | "" | k | M | G | T | P | E
//! decimalExponent ::= ("e" | "E") signedInteger
//! ```
//!
//! Values are kept as `mantissa × 10^exp10 × 2^exp2` so comparisons are exact (`1Gi` equals
//! `1073741824`, `0.5` equals `500m`).

use std::cmp::Ordering;

/// A parsed quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    /// All digits of the number with the decimal point removed.
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Syntax,
    #[error("quantity has too many digits")]
    TooLarge,
}

/// Upper bound on the decimal exponent we accept: far beyond any real quantity, small enough to
/// keep arithmetic in range.
const MAX_EXP10: i64 = 1000;

impl Quantity {
    /// Parses a quantity string.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(QuantityError::Syntax);
        }
        let mut mantissa: u128 = 0;
        for c in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(c - b'0')))
                .ok_or(QuantityError::TooLarge)?;
        }
        let frac_len = i64::try_from(frac_part.len()).map_err(|_| QuantityError::TooLarge)?;
        let (suffix_exp10, exp2): (i64, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other => {
                let exp = other
                    .strip_prefix(['e', 'E'])
                    .ok_or(QuantityError::Syntax)?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(QuantityError::Syntax);
                }
                let value: i64 = exp.parse().map_err(|_| QuantityError::TooLarge)?;
                if value.abs() > MAX_EXP10 {
                    return Err(QuantityError::TooLarge);
                }
                (value, 0)
            }
        };
        let exp10 = i32::try_from(suffix_exp10 - frac_len).map_err(|_| QuantityError::TooLarge)?;
        Ok(Quantity {
            negative: negative && mantissa != 0,
            mantissa,
            exp10,
            exp2,
        })
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// True when the value is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The value as a whole number rounded up, like Go's `Quantity.Value()` (what upstream puts in
    /// `SPIN_MAX_INSTANCE_MEMORY`); `None` when negative or beyond `i64`.
    pub fn to_whole_units(&self) -> Option<u64> {
        if self.negative {
            return None;
        }
        if self.mantissa == 0 {
            return Some(0);
        }
        let whole = if self.exp10 >= 0 {
            let shifted = self.mantissa.checked_mul(1u128.checked_shl(self.exp2)?)?;
            shifted.checked_mul(10u128.checked_pow(self.exp10.unsigned_abs())?)?
        } else {
            // Neither `mantissa × 2^exp2` nor `10^-exp10` need fit in 128 bits for the quotient
            // to (`0.5Ei`, `1e-39`).
            div_ceil_pow10(self.mantissa, self.exp2, self.exp10.unsigned_abs())?
        };
        u64::try_from(whole)
            .ok()
            .filter(|w| i64::try_from(*w).is_ok())
    }

    /// `mantissa × 2^exp2` as an integer with trailing decimal zeros moved into the exponent.
    fn normalized(&self) -> Option<(u128, i64)> {
        let mut m = self.mantissa.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let mut e = i64::from(self.exp10);
        if m == 0 {
            return Some((0, 0));
        }
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        Some((m, e))
    }

    /// Compares magnitudes: exact when the values fit in 128 bits, otherwise by logarithm.
    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        match (self.normalized(), other.normalized()) {
            (Some((a, ea)), Some((b, eb))) => {
                if a == 0 || b == 0 {
                    return a.cmp(&b);
                }
                // Compare a·10^ea with b·10^eb by scaling the one with the larger exponent.
                let (scaled_is_a, diff) = if ea >= eb {
                    (true, ea - eb)
                } else {
                    (false, eb - ea)
                };
                let (big, small) = if scaled_is_a { (a, b) } else { (b, a) };
                let scaled = u32::try_from(diff)
                    .ok()
                    .and_then(|d| 10u128.checked_pow(d))
                    .and_then(|p| big.checked_mul(p));
                let ord = match scaled {
                    Some(v) => v.cmp(&small),
                    // Overflow: the scaled side exceeds anything a u128 holds.
                    None => Ordering::Greater,
                };
                if scaled_is_a { ord } else { ord.reverse() }
            }
            _ => self.log10().total_cmp(&other.log10()),
        }
    }

    fn log10(&self) -> f64 {
        if self.mantissa == 0 {
            return f64::NEG_INFINITY;
        }
        (self.mantissa as f64).log10()
            + f64::from(self.exp10)
            + f64::from(self.exp2) * std::f64::consts::LOG10_2
    }
}

/// `ceil(mantissa × 2^exp2 / 10^k)` when it fits in 128 bits, computed in 64-bit limbs (the
/// product has at most 188 bits: `exp2 <= 60`).
fn div_ceil_pow10(mantissa: u128, exp2: u32, k: u32) -> Option<u128> {
    if exp2 >= 64 {
        return None;
    }
    // Little-endian limbs of the mantissa (the casts keep the low 64 bits on purpose).
    let mut limbs = [mantissa as u64, (mantissa >> 64) as u64, 0, 0];
    if exp2 > 0 {
        for i in (0..limbs.len()).rev() {
            let carry = if i > 0 {
                limbs[i - 1] >> (64 - exp2)
            } else {
                0
            };
            limbs[i] = (limbs[i] << exp2) | carry;
        }
    }
    let mut inexact = false;
    for _ in 0..k {
        if limbs.iter().all(|&l| l == 0) {
            break;
        }
        let mut rem: u128 = 0;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 64) | u128::from(*limb);
            // `cur < 10 × 2^64`, so the quotient fits in a limb.
            *limb = (cur / 10) as u64;
            rem = cur % 10;
        }
        inexact |= rem != 0;
    }
    if limbs[2] != 0 || limbs[3] != 0 {
        return None;
    }
    let floor = u128::from(limbs[0]) | (u128::from(limbs[1]) << 64);
    floor.checked_add(u128::from(inexact))
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn accepts_the_grammar() {
        for ok in [
            "0", "1", "+1", "-1", "1.5", "1.", ".5", "250m", "500u", "100n", "1k", "1M", "1G",
            "1T", "1P", "1E", "128Mi", "1Ki", "1Gi", "1Ti", "1Pi", "1Ei", "1e3", "1E3", "1e-3",
            "1e+3", "1.5e2",
        ] {
            assert!(Quantity::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            "", "Mi", "1 Mi", "1mi", "1KB", "1K", "abc", "1..2", "1.2.3", ".", "-", "1e", "1e1.5",
            "1ee3", "1Mi ", " 1", "1m1", "0x10",
        ] {
            assert_eq!(Quantity::parse(bad), Err(QuantityError::Syntax), "{bad}");
        }
        assert_eq!(
            Quantity::parse(&"9".repeat(50)),
            Err(QuantityError::TooLarge)
        );
    }

    #[test]
    fn compares_exactly_across_suffixes() {
        assert_eq!(q("1Gi").cmp(&q("1073741824")), Ordering::Equal);
        assert_eq!(q("0.5").cmp(&q("500m")), Ordering::Equal);
        assert_eq!(q("1e3").cmp(&q("1k")), Ordering::Equal);
        assert_eq!(q("1.5Gi").cmp(&q("1536Mi")), Ordering::Equal);
        assert!(q("128Mi") < q("256Mi"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("1Mi") > q("1M"));
        assert!(q("100m") < q("1"));
        assert!(q("-1") < q("0"));
        assert!(q("-2") < q("-1"));
        assert_eq!(q("-0").cmp(&q("0")), Ordering::Equal);
        assert!(q("1Ei") > q("1E"));
        assert!(q("1e100") > q("1Ei"));
        assert!(q("1e-100") < q("1m"));
        assert!(!q("1").is_negative() && q("-1m").is_negative());
    }

    #[test]
    fn whole_units_round_up_like_go_value() {
        let whole = |s: &str| q(s).to_whole_units();
        assert_eq!(whole("64Mi"), Some(64 * 1024 * 1024));
        assert_eq!(whole("1.5Gi"), Some(1_610_612_736));
        assert_eq!(whole("129e6"), Some(129_000_000));
        assert_eq!(whole("129M"), Some(129_000_000));
        assert_eq!(whole("+2Ki"), Some(2048));
        assert_eq!(whole(".5Ki"), Some(512));
        assert_eq!(whole("100m"), Some(1));
        assert_eq!(whole("1500m"), Some(2));
        assert_eq!(whole("1n"), Some(1));
        assert_eq!(whole("0"), Some(0));
        assert_eq!(whole("-1Mi"), None);
        assert_eq!(whole("99999999999Ei"), None);
        assert_eq!(whole("1e999"), None);
        // Found by the `quantity` fuzz target: values whose exact form overflows 128 bits on
        // the way to a small whole number.
        assert_eq!(whole("1e-39"), Some(1));
        assert_eq!(whole("0e999"), Some(0));
        assert_eq!(whole("0.5Ei"), Some(1 << 59));
        assert_eq!(whole("2e-1000"), Some(1));
        assert_eq!(whole("0.00000000000000000295147905179352825856Ei"), Some(4));
        assert!(q("1u") > q("1n") && q("1m") > q("1u"));
    }
}
