//! Who is asking: API tokens and built-in accounts (and, as they land, the other sign-in
//! providers and sessions).

pub mod jwks;
pub mod jwt;
pub mod local;
pub mod password;
pub mod tokens;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random base62 characters from the operating system's random source (5.95 bits each).
pub fn random_base62(len: usize) -> String {
    // Rejection sampling keeps every character equally likely.
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        for byte in bytes {
            if byte < 248 && out.len() < len {
                out.push(BASE62[(byte % 62) as usize] as char);
            }
        }
    }
    out
}
