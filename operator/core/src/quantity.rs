//! Kubernetes resource quantities (`500m`, `2`, `128Gi`, `1e3`) as exact integers.
//!
//! Values are held in thousandths of the base unit ("milli-units") as `i128`, so that
//! CPU (`250m`) and memory (`256Gi`) sums are exact and never overflow for any
//! realistic data center.

use std::fmt;

/// A quantity in thousandths of its base unit (millicores for CPU, millibytes for memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Milli(pub i128);

/// Why a quantity string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    /// The string that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Milli {
    /// Zero.
    pub const ZERO: Milli = Milli(0);

    /// Parses a Kubernetes quantity. Fractions below a milli-unit are rounded up, like
    /// the API server does.
    pub fn parse(input: &str) -> Result<Milli, QuantityError> {
        let err = |reason| QuantityError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err("expected a number such as 2, 0.5 or 500m"));
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.len() + frac_part.len() > 30 {
            return Err(err("too many digits"));
        }
        // value = digits / 10^frac_len * multiplier ; we compute in milli-units.
        let digits: i128 = format!("{int_part}{frac_part}")
            .parse::<i128>()
            .map_err(|_| err("expected a number"))?;
        let frac_len = frac_part.len() as u32;
        // Multiplier expressed as numerator/denominator over milli-units.
        let (num, den): (i128, i128) = match suffix {
            "" => (1000, 1),
            "n" => (1, 1_000_000),
            "u" => (1, 1000),
            "m" => (1, 1),
            "k" => (1000 * 1000, 1),
            "M" => (1000 * 1_000_000, 1),
            "G" => (1000 * 1_000_000_000, 1),
            "T" => (1000 * 1_000_000_000_000, 1),
            "P" => (1000 * 1_000_000_000_000_000, 1),
            "E" => (1000 * 1_000_000_000_000_000_000, 1),
            "Ki" => (1000 << 10, 1),
            "Mi" => (1000 << 20, 1),
            "Gi" => (1000 << 30, 1),
            "Ti" => (1000 << 40, 1),
            "Pi" => (1000 << 50, 1),
            "Ei" => (1000 << 60, 1),
            other => {
                let exp = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or_else(|| err("unknown suffix; use m, k, M, G, T, Ki, Mi, Gi, Ti or an exponent like e3"))?;
                let exp: i32 = exp.parse().map_err(|_| err("invalid exponent"))?;
                if !(-9..=18).contains(&exp) {
                    return Err(err("exponent out of range"));
                }
                if exp >= -3 {
                    (10i128.pow((exp + 3) as u32), 1)
                } else {
                    (1, 10i128.pow((-exp - 3) as u32))
                }
            }
        };
        let den = den
            .checked_mul(10i128.pow(frac_len))
            .ok_or_else(|| err("too many decimal places"))?;
        let scaled = digits.checked_mul(num).ok_or_else(|| err("value too large"))?;
        // Round up to the next milli-unit (checked: den can be as large as 10^36).
        let value = scaled
            .checked_add(den - 1)
            .map(|v| v / den)
            .ok_or_else(|| err("value too large"))?;
        Ok(Milli(if negative { -value } else { value }))
    }

    /// Whole base units, rounded down.
    pub fn whole(self) -> i128 {
        self.0.div_euclid(1000)
    }

    /// Formats as a CPU quantity: `16`, `2500m`.
    pub fn to_cpu_string(self) -> String {
        if self.0 % 1000 == 0 {
            format!("{}", self.0 / 1000)
        } else {
            format!("{}m", self.0)
        }
    }

    /// Formats as a byte quantity with the largest exact binary suffix: `256Gi`, `1536Mi`.
    pub fn to_bytes_string(self) -> String {
        let bytes = self.0.div_euclid(1000);
        if bytes == 0 {
            return "0".to_string();
        }
        for (shift, suffix) in [(60, "Ei"), (50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
            if bytes % (1i128 << shift) == 0 {
                return format!("{}{}", bytes >> shift, suffix);
            }
        }
        format!("{bytes}")
    }

    /// Formats as a plain count (pods).
    pub fn to_count_string(self) -> String {
        format!("{}", self.whole())
    }

    /// Multiplies by a ratio (overcommit), rounding down.
    pub fn scale(self, ratio: f64) -> Milli {
        if !ratio.is_finite() || ratio <= 0.0 {
            return Milli::ZERO;
        }
        // Ratios carry at most 3 decimals of meaning; keep exact integer maths.
        let r = (ratio * 1000.0).round() as i128;
        Milli(self.0.saturating_mul(r) / 1000)
    }
}

impl std::ops::Add for Milli {
    type Output = Milli;
    fn add(self, rhs: Milli) -> Milli {
        Milli(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::AddAssign for Milli {
    fn add_assign(&mut self, rhs: Milli) {
        *self = *self + rhs;
    }
}

impl std::ops::Sub for Milli {
    type Output = Milli;
    fn sub(self, rhs: Milli) -> Milli {
        Milli(self.0.saturating_sub(rhs.0))
    }
}

impl std::iter::Sum for Milli {
    fn sum<I: Iterator<Item = Milli>>(iter: I) -> Milli {
        iter.fold(Milli::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> i128 {
        match Milli::parse(s) {
            Ok(m) => m.0,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parses_cpu() {
        assert_eq!(p("2"), 2000);
        assert_eq!(p("500m"), 500);
        assert_eq!(p("0.5"), 500);
        assert_eq!(p("1.25"), 1250);
        assert_eq!(p("100u"), 1); // rounds up
        assert_eq!(p("1e3"), 1_000_000);
        assert_eq!(p("-1"), -1000);
    }

    #[test]
    fn parses_memory() {
        assert_eq!(p("1Ki"), 1024 * 1000);
        assert_eq!(p("256Gi"), 256 * (1i128 << 30) * 1000);
        assert_eq!(p("1.5Gi"), 3 * (1i128 << 29) * 1000);
        assert_eq!(p("1G"), 1_000_000_000 * 1000);
        assert_eq!(p("128974848"), 128974848 * 1000);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "5Qi", "1e99", ".", "Gi", "9".repeat(40).as_str()] {
            assert!(Milli::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(Milli(96_000).to_cpu_string(), "96");
        assert_eq!(Milli(2500).to_cpu_string(), "2500m");
        assert_eq!(Milli::parse("384Gi").map(|m| m.to_bytes_string()), Ok("384Gi".into()));
        assert_eq!(Milli::parse("1536Mi").map(|m| m.to_bytes_string()), Ok("1536Mi".into()));
        assert_eq!(Milli(330_000).to_count_string(), "330");
    }

    #[test]
    fn scales_by_overcommit() {
        assert_eq!(Milli(10_000).scale(1.5), Milli(15_000));
        assert_eq!(Milli(10_000).scale(1.0), Milli(10_000));
        assert_eq!(Milli(10_000).scale(f64::NAN), Milli::ZERO);
    }
}
