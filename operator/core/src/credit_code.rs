//! The unified social credit code (统一社会信用代码, GB 32100-2015).
//!
//! 18 characters from `0-9 A-H J-N P-R T-U W-Y` (31 symbols, no I, O, S, V, Z):
//! 1 registration authority, 2 organisation type, 3–8 administrative division code
//! (digits), 9–17 organisation code, 18 check character. The check character is
//! `31 − (Σ value(cᵢ)·wᵢ mod 31)` with `wᵢ = 3^(i−1) mod 31`, and 31 written as `0`.

/// The alphabet and weights live with the CRD types, whose validation rule uses them.
pub use govcloud_api::credit_code::{ALPHABET, WEIGHTS};

/// Why a code is invalid; each message names the position and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditCodeError {
    /// Not 18 characters.
    #[error("must be 18 characters, got {0}")]
    Length(usize),
    /// A character outside the alphabet.
    #[error(
        "character {ch:?} at position {pos} is not allowed (use 0-9 and A-H, J-N, P-R, T-U, W-Y; no I, O, S, V, Z)"
    )]
    Character {
        /// 1-based position.
        pos: usize,
        /// The character.
        ch: char,
    },
    /// Positions 3–8 must be digits (the administrative division code).
    #[error("positions 3-8 are the administrative division code and must be digits, got {0:?}")]
    Division(String),
    /// The check character does not match.
    #[error("check character is {found:?} but should be {expected:?} (GB 32100-2015); the code is mistyped")]
    Check {
        /// The 18th character given.
        found: char,
        /// The computed one.
        expected: char,
    },
}

fn value(ch: char) -> Option<u32> {
    ALPHABET.find(ch).map(|i| i as u32)
}

/// Computes the check character of the first 17 characters.
pub fn check_char(first17: &str) -> Result<char, CreditCodeError> {
    let mut sum = 0u32;
    for (i, ch) in first17.chars().enumerate().take(17) {
        let v = value(ch).ok_or(CreditCodeError::Character { pos: i + 1, ch })?;
        sum += v * WEIGHTS[i];
    }
    let c = (31 - sum % 31) % 31;
    Ok(ALPHABET.as_bytes()[c as usize] as char)
}

/// Validates a code: length, alphabet, division digits and check character.
pub fn validate(code: &str) -> Result<(), CreditCodeError> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(CreditCodeError::Length(chars.len()));
    }
    for (i, &ch) in chars.iter().enumerate() {
        if value(ch).is_none() {
            return Err(CreditCodeError::Character { pos: i + 1, ch });
        }
    }
    let division: String = chars[2..8].iter().collect();
    if !division.chars().all(|c| c.is_ascii_digit()) {
        return Err(CreditCodeError::Division(division));
    }
    let first17: String = chars[..17].iter().collect();
    let expected = check_char(&first17)?;
    if chars[17] != expected {
        return Err(CreditCodeError::Check {
            found: chars[17],
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_powers_of_three_mod_31() {
        let mut w = 1u32;
        for expected in WEIGHTS {
            assert_eq!(w, expected);
            w = w * 3 % 31;
        }
    }

    #[test]
    fn accepts_valid_codes() {
        // The example code printed in guides to GB 32100-2015.
        assert_eq!(validate("91350100M000100Y43"), Ok(()));
        // A central state organ (11 = 机构编制/机关, division 100000) with its computed check.
        let prefix = "11100000MB0123456";
        let code = match check_char(prefix) {
            Ok(c) => format!("{prefix}{c}"),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(validate(&code), Ok(()), "{code}");
    }

    #[test]
    fn check_character_31_is_written_as_zero() {
        // Search for a 17-character prefix whose sum is divisible by 31.
        let prefix = (0..31u32)
            .map(|d| format!("1110000000000000{}", ALPHABET.as_bytes()[d as usize] as char))
            .find(|p| {
                p.chars()
                    .enumerate()
                    .map(|(i, c)| value(c).unwrap_or(0) * WEIGHTS[i])
                    .sum::<u32>()
                    % 31
                    == 0
            });
        let Some(prefix) = prefix else {
            panic!("no prefix found")
        };
        assert_eq!(check_char(&prefix), Ok('0'));
        assert_eq!(validate(&format!("{prefix}0")), Ok(()));
    }

    #[test]
    fn rejects_invalid_codes() {
        assert_eq!(validate("91350100M000100Y4"), Err(CreditCodeError::Length(17)));
        assert_eq!(
            validate("91350100M000100Y44"),
            Err(CreditCodeError::Check {
                found: '4',
                expected: '3'
            })
        );
        assert!(matches!(
            validate("91350100M0001O0Y43"),
            Err(CreditCodeError::Character { pos: 14, ch: 'O' })
        ));
        assert!(matches!(
            validate("913A0100M000100Y43"),
            Err(CreditCodeError::Division(_))
        ));
        assert!(matches!(
            validate("91350100m000100Y43"),
            Err(CreditCodeError::Character { pos: 9, .. })
        ));
        assert_eq!(
            validate("统一社会信用代码统一社会信用代码统一"),
            Err(CreditCodeError::Character { pos: 1, ch: '统' })
        );
    }

    #[test]
    fn every_single_character_typo_is_detected() {
        let code: Vec<char> = "91350100M000100Y43".chars().collect();
        for pos in 0..17 {
            for sub in ALPHABET.chars() {
                if sub == code[pos] {
                    continue;
                }
                let mut typo = code.clone();
                typo[pos] = sub;
                let s: String = typo.iter().collect();
                assert!(validate(&s).is_err(), "typo {s} accepted");
            }
        }
    }
}
