//! The old path of [`error_chain`](crate::config::error_chain): one line for an error and
//! every cause under it.

pub(crate) use crate::config::error_chain;
