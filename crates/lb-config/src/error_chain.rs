//! One line for an error and every cause under it, `: `-separated: what configuration
//! errors and log lines show (`cannot listen on 127.0.0.1:9901: Address already in use`).

/// `error: cause: cause...`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:9901")]
    struct Listen(#[source] std::io::Error);

    #[test]
    fn every_cause_is_named_once_in_order() {
        let outer = Listen(std::io::Error::other("Address already in use"));
        assert_eq!(
            error_chain(&outer),
            "cannot listen on 127.0.0.1:9901: Address already in use"
        );
        assert_eq!(error_chain(&std::io::Error::other("alone")), "alone");
    }
}
