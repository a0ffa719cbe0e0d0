//! The rule table: defaulting and validation of SpinApps and SpinAppExecutors (pure).
