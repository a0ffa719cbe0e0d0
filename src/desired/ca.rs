//! Default CA bundle Secret.

/// Key of the bundle inside the CA Secret (upstream's name).
pub const CA_BUNDLE_KEY: &str = "ca-certificates.crt";

/// PEM bundle of default root CAs.
pub fn default_ca_bundle() -> String {
    String::new()
}
