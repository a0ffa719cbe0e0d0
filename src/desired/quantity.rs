//! Kubernetes quantity → integer bytes, for `invocationLimits.memory`.
//!
//! Same result as upstream's `resource.ParseQuantity(s).ToDec().Value()`: the value rounded up to
//! a whole number. Private on purpose: only the memory limit needs it here.

/// Parses a quantity (`64Mi`, `1.5G`, `128974848`, `129e6`) into a whole, non-negative number,
/// rounding fractions up. The error says what is wrong, without echoing anything secret (limits
/// are not secret anyway).
pub(super) fn to_whole_bytes(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s != input || s.is_empty() {
        return Err("not a quantity".into());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err("must not be negative".into());
    }
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err("not a quantity".into());
    }
    let overflow = || "too large".to_string();
    let mut numerator: u128 = 0;
    for d in int_part.bytes().chain(frac_part.bytes()) {
        numerator = numerator
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(d - b'0')))
            .ok_or_else(overflow)?;
    }
    // value = numerator / 10^frac * 2^bin_exp * 10^dec_exp
    let mut dec_exp: i64 = -(frac_part.len() as i64);
    let mut bin_exp: u32 = 0;
    match suffix {
        "" => {}
        "Ki" => bin_exp = 10,
        "Mi" => bin_exp = 20,
        "Gi" => bin_exp = 30,
        "Ti" => bin_exp = 40,
        "Pi" => bin_exp = 50,
        "Ei" => bin_exp = 60,
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        other => {
            let exp = other
                .strip_prefix(['e', 'E'])
                .and_then(|e| e.parse::<i64>().ok())
                .filter(|e| e.abs() <= 64)
                .ok_or_else(|| "unknown suffix".to_string())?;
            dec_exp += exp;
        }
    }
    // A left shift silently drops high bits: check they are free first.
    if numerator.leading_zeros() < bin_exp {
        return Err(overflow());
    }
    numerator <<= bin_exp;
    let mut denominator: u128 = 1;
    if dec_exp >= 0 {
        let factor = 10u128
            .checked_pow(u32::try_from(dec_exp).map_err(|_| overflow())?)
            .ok_or_else(overflow)?;
        numerator = numerator.checked_mul(factor).ok_or_else(overflow)?;
    } else {
        denominator = 10u128
            .checked_pow(u32::try_from(-dec_exp).map_err(|_| overflow())?)
            .ok_or_else(overflow)?;
    }
    let whole = numerator.div_ceil(denominator);
    u64::try_from(whole)
        .ok()
        .filter(|w| i64::try_from(*w).is_ok())
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::to_whole_bytes;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(to_whole_bytes("64Mi"), Ok(64 * 1024 * 1024));
        assert_eq!(to_whole_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(to_whole_bytes("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(to_whole_bytes("128974848"), Ok(128_974_848));
        assert_eq!(to_whole_bytes("129e6"), Ok(129_000_000));
        assert_eq!(to_whole_bytes("129M"), Ok(129_000_000));
        assert_eq!(to_whole_bytes("1k"), Ok(1000));
        assert_eq!(to_whole_bytes("+2Ki"), Ok(2048));
        assert_eq!(to_whole_bytes(".5Ki"), Ok(512));
    }

    #[test]
    fn fractions_round_up_like_go_value() {
        assert_eq!(to_whole_bytes("100m"), Ok(1));
        assert_eq!(to_whole_bytes("1500m"), Ok(2));
        assert_eq!(to_whole_bytes("0.1"), Ok(1));
        assert_eq!(to_whole_bytes("0"), Ok(0));
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in [
            "",
            "Mi",
            "1.2.3",
            "-1Mi",
            "12X",
            "1e",
            " 1Mi",
            "99999999999Ei",
            "1e999",
        ] {
            assert!(to_whole_bytes(bad).is_err(), "{bad:?} should fail");
        }
    }
}
