//! Serving certificates: hot reload from a mounted Secret and the self-signed mode.
