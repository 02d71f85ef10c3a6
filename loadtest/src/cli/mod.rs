//! The subcommands' arguments and glue to the library.

pub mod bwe;
pub mod link;
