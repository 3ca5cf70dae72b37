//! Who is asking: API tokens (and, as they land, sign-in providers and sessions).

pub mod tokens;
