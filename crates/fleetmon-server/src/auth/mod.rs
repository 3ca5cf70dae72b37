//! Who is asking: API tokens, fleetmon's own accounts and sessions, and the identity providers
//! (Stack Auth, any OpenID Connect issuer) whose tokens are verified locally against their JWKS.

pub mod jwks;
pub mod jwt;
pub mod local;
pub mod oidc;
pub mod password;
pub mod providers;
pub mod sessions;
pub mod settings;
pub mod signing;
pub mod stack;
pub mod stack_sync;
pub mod svix;
pub mod teams;
pub mod throttle;
pub mod tokens;
pub mod users;

/// Whether `url` points at this machine: the only place plain http is accepted for identity
/// providers (tests and local setups).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// https anywhere, or http on loopback.
pub fn secure_transport(url: &reqwest::Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url))
}

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

/// Everything sign-in needs at run time: the settings, the providers with their key caches, and
/// one HTTP client for talking to identity providers.
pub struct Auth {
    pub settings: settings::AuthSettings,
    pub providers: providers::Providers,
    pub http: reqwest::Client,
    /// Stack's client API, for sign-in from fleetmon's own page and refresh.
    pub stack: Option<stack::StackClient>,
}

impl Auth {
    pub fn new(
        settings: settings::AuthSettings,
        db: &crate::db::TenantDb,
    ) -> Result<Self, providers::ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .connect_timeout(std::time::Duration::from_secs(5))
            // Identity-provider responses are never followed elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| providers::ProviderError::Keys(e.to_string()))?;
        let providers = providers::Providers::new(&settings, db, &http)?;
        let stack = settings
            .stack
            .as_ref()
            .map(|stack| stack::StackClient::new(stack.settings.clone()))
            .transpose()
            .map_err(|e| providers::ProviderError::Keys(e.to_string()))?;
        Ok(Self {
            settings,
            providers,
            http,
            stack,
        })
    }
}
