//! The alphabet and weights of the unified social credit code (统一社会信用代码,
//! GB 32100-2015), which the CEL rule on `spec.agency.creditCode` recomputes; the check
//! itself is `govcloud_core::credit_code`.

/// The 31 symbols in value order.
pub const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weights of positions 1–17: 3^(i−1) mod 31.
pub const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
