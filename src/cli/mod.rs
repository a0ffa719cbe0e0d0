//! Subcommands of the `spin-operator` binary. Thin: parsing, I/O and printing around the library.

mod certificates;
pub mod dev_cert;
pub mod docs;
pub mod render;
pub mod rules;
pub mod run;
pub mod scaffold;
mod shutdown;
pub mod validate;
