//! Kubernetes quantities (`4Gi`, `500m`, `64000000000000000u`, `1e3`), read exactly as the API
//! server reads them: the one parser every size, limit and cap in the operator goes through.
//!
//! The grammar is apimachinery's `resource.ParseQuantity`:
//! `[+-]` digits [`.` digits] then one suffix: binary SI (`Ki` … `Ei`), decimal SI (`n u m k M G T P E`
//! or none) or a decimal exponent (`e3`, `E-2`). The value is held as a whole number of nano-units,
//! rounded up as the API server rounds; a value this cannot hold exactly (more than ~10^29 units, or
//! an exponent past ±40) is unreadable, and callers refuse what they cannot read.

use std::fmt;

/// A quantity's exact value, in nano-units (10^-9): ordering compares values, whatever the suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Value(i128);

impl Value {
    /// The value in whole units, rounded up (`500m` is 1).
    pub fn ceil_units(self) -> i128 {
        (self.0 + NANO - 1).div_euclid(NANO)
    }

    /// Whether it is below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}n", self.0)
    }
}

const NANO: i128 = 1_000_000_000;
/// Longer strings are no quantity anyone writes; refusing them bounds the work.
const MAX_LEN: usize = 64;
const MAX_EXPONENT: i32 = 40;

/// Reads `s` as a Kubernetes quantity; `None` when it is not one or is too large to hold exactly.
pub fn parse(s: &str) -> Option<Value> {
    if s.is_empty() || s.len() > MAX_LEN || !s.is_ascii() {
        return None;
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let (ten, two) = suffix_powers(suffix)?;
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    // value = mantissa × 10^(ten − |fraction|) × 2^two, in nano-units: × 10^9 more.
    let power = ten - i32::try_from(fraction.len()).ok()? + 9;
    let scaled = if power >= 0 {
        mantissa.checked_mul(10i128.checked_pow(u32::try_from(power).ok()?)?)?
    } else {
        let div = 10i128.checked_pow(power.unsigned_abs());
        // Past 10^38 every mantissa we hold is smaller than the divisor: it rounds up to 1 (or 0).
        div.map_or(i128::from(mantissa > 0), |d| (mantissa + d - 1) / d)
    };
    let value = scaled.checked_mul(1i128.checked_shl(two)?)?;
    Some(Value(if negative { -value } else { value }))
}

/// Whether `s` is a quantity this parser (and so the API server) reads.
pub fn is_quantity(s: &str) -> bool {
    parse(s).is_some()
}

/// The suffix as (power of ten, power of two).
fn suffix_powers(suffix: &str) -> Option<(i32, u32)> {
    Some(match suffix {
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
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3 {
                return None;
            }
            let e: i32 = exp.parse().ok()?;
            if e.abs() > MAX_EXPONENT {
                return None;
            }
            (e, 0)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn reads_every_suffix_the_api_server_reads() {
        assert_eq!(v("1"), Value(NANO));
        assert_eq!(v("1n"), Value(1));
        assert_eq!(v("1u"), Value(1_000));
        assert_eq!(v("500m"), Value(500_000_000));
        assert_eq!(v("1k"), v("1000"));
        assert_eq!(v("1Ki"), v("1024"));
        assert_eq!(v("1Gi"), v("1073741824"));
        assert_eq!(v("1024Mi"), v("1Gi"));
        assert_eq!(v("1.5Gi"), v("1536Mi"));
        assert_eq!(v("1e3"), v("1k"));
        assert_eq!(v("1E3"), v("1k"));
        assert_eq!(v("2E"), v("2e18"));
        assert_eq!(v("1e-3"), v("1m"));
        assert_eq!(v(".5"), v("500m"));
        assert_eq!(v("5."), v("5"));
        assert_eq!(v("+1"), v("1"));
        assert!(v("-1").is_negative());
        assert_eq!(v("0.1n"), Value(1), "rounded up to a nano-unit, as the API server does");
        assert_eq!(v("1Ei"), Value(1_152_921_504_606_846_976 * NANO));
    }

    #[test]
    fn the_micro_suffix_is_read_not_waved_through() {
        // The hole this parser closes: 64 GB written in micro-units was unreadable, so it passed a 16Gi cap.
        assert!(v("64000000000000000u") > v("16Gi"));
        assert_eq!(v("64000000000000000u"), v("64G"));
        assert_eq!(v("64000000000000000u").ceil_units(), 64_000_000_000);
        assert_eq!(v("500m").ceil_units(), 1);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "", "big", "Gi", "1.2.3Gi", "10GB", "1e3Gi", "1Gi5", " 1", "1 ", "e3", "1e", "1e+", "1e999", "1e41", "--1",
            "1.5.", ".", "+", "0x10", "１", "1KI", "1ki", "1K",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse(&"9".repeat(65)), None, "too long");
        assert_eq!(parse("999999999999999999999999Ei"), None, "too large to hold exactly");
        assert_eq!(parse(&format!("1{}", "0".repeat(39))), None);
    }

    #[test]
    fn leading_zeros_and_tiny_values() {
        assert_eq!(v("0"), Value(0));
        assert_eq!(v("000000000000000000000000000000000000000001"), v("1"));
        assert_eq!(v("1e-40"), Value(1));
        assert_eq!(v("0e-40"), Value(0));
    }
}
