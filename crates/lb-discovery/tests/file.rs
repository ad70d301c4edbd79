//! File discovery on real files in a temporary directory, watched through inotify: a
//! write, a change, an invalid file (last good set kept, error surfaced with the path and
//! the problem), an atomic rename-over save, a delete-and-recreate save, and JSON.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use lb_discovery::file::{File, FileError};
use lb_discovery::{Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery};

/// Every wait of these tests ends by this deadline.
const DEADLINE: Duration = Duration::from_secs(10);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "lb_discovery=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

fn source(path: &Path) -> File {
    init_logs();
    File::new(path)
        .unwrap()
        .with_debounce(Duration::from_millis(30))
}

/// Writes `text` to `path` the way editors and deployment tools do: a temporary file in
/// the same directory, then `rename(2)` over the old one.
fn save_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The backends' names, in set order.
fn names(found: &Discovered) -> Vec<String> {
    found.backends.iter().map(|b| b.name().to_owned()).collect()
}

/// The next stream item, or a failure naming what was awaited.
async fn next(stream: &mut DiscoveryStream, what: &str) -> Result<Discovered, DiscoveryError> {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no stream item within {DEADLINE:?}: {what}"))
        .expect("file streams never end")
}

/// The next `Ok` item, skipping errors (a file caught between two writes).
async fn next_ok(stream: &mut DiscoveryStream, what: &str) -> Discovered {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let item = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no good set within {DEADLINE:?}: {what}"))
            .expect("file streams never end");
        if let Ok(found) = item {
            return found;
        }
    }
}

#[tokio::test]
async fn changes_are_pushed_and_an_invalid_file_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.toml");
    std::fs::write(
        &path,
        r#"backends = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 3, enabled = false }]"#,
    )
    .unwrap();
    let file = source(&path);

    let found = file.discover().await.unwrap();
    assert_eq!(names(&found), ["127.0.0.1:9001", "127.0.0.1:9002"]);
    assert_eq!(found.backends[1].weight().get(), 3);
    assert!(!found.is_enabled(found.backends[1].addr()));

    let mut stream = file.watch().unwrap();
    let mut last_good = next(&mut stream, "the current set").await.unwrap();
    assert_eq!(last_good, found);

    // An in-place write (truncate, then write: a reload may catch it half-done, which is
    // an error, never a partial set).
    std::fs::write(&path, r#"backends = ["127.0.0.1:9001", "127.0.0.1:9003"]"#).unwrap();
    last_good = next_ok(&mut stream, "the written file").await;
    assert_eq!(names(&last_good), ["127.0.0.1:9001", "127.0.0.1:9003"]);
    assert!(last_good.disabled.is_empty());

    // An invalid file: an error naming the file and the problem; the set stays.
    let errors = file.error_count();
    save_atomically(&path, "backends = [\"127.0.0.1:9001\",\n  { addr = 5 }]\n");
    let err = next(&mut stream, "the invalid file").await.unwrap_err();
    let chain = err.chain();
    assert!(chain.contains(&path.display().to_string()), "{chain}");
    assert!(chain.contains("line 2"), "{chain}");
    assert!(matches!(
        err.cause().downcast_ref(),
        Some(FileError::Toml { .. })
    ));
    assert_eq!(file.error_count(), errors + 1);
    assert!(
        file.discover().await.is_err(),
        "polling sees the same error"
    );
    assert_eq!(file.error_count(), errors + 2);

    // An atomic save fixes it: the recovery is pushed.
    save_atomically(&path, r#"backends = ["127.0.0.1:9004"]"#);
    last_good = next(&mut stream, "the file saved by rename").await.unwrap();
    assert_eq!(names(&last_good), ["127.0.0.1:9004"]);

    // Other saves of the same content push nothing; a real change follows.
    save_atomically(&path, r#"backends = ["127.0.0.1:9004"]"#);
    save_atomically(&path, r#"backends = ["127.0.0.1:9004", "127.0.0.1:9005"]"#);
    last_good = next(&mut stream, "the second rename").await.unwrap();
    assert_eq!(names(&last_good), ["127.0.0.1:9004", "127.0.0.1:9005"]);
}

#[tokio::test]
async fn json_files_delete_and_recreate_saves_and_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.json");
    let file = source(&path);
    let mut stream = file.watch().unwrap();

    // The file does not exist yet: an error, then its creation is picked up.
    let err = next(&mut stream, "the missing file").await.unwrap_err();
    assert!(matches!(
        err.cause().downcast_ref(),
        Some(FileError::Read { .. })
    ));
    std::fs::write(
        &path,
        r#"{"backends": ["127.0.0.1:9001", {"addr": "127.0.0.1:9002", "weight": 2}]}"#,
    )
    .unwrap();
    let found = next_ok(&mut stream, "the created file").await;
    assert_eq!(names(&found), ["127.0.0.1:9001", "127.0.0.1:9002"]);

    // Saved by deleting the old file and writing a new one.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, r#"{"backends": ["127.0.0.1:9003"]}"#).unwrap();
    // The delete alone may be seen first, as an error.
    let found = next_ok(&mut stream, "the recreated file").await;
    assert_eq!(names(&found), ["127.0.0.1:9003"]);

    // Bad entries are errors naming what is wrong.
    for (text, want) in [
        (
            r#"{"backends": ["127.0.0.1:9001", "127.0.0.1:9001"]}"#,
            "both have address",
        ),
        (
            r#"{"backends": [{"addr": "127.0.0.1:9001", "weight": 0}]}"#,
            "weight 0",
        ),
        (r#"{"backends": ["not an address"]}"#, "not an address"),
        (r#"{"servers": []}"#, "servers"),
    ] {
        save_atomically(&path, text);
        let err = next(&mut stream, want).await.unwrap_err();
        assert!(err.chain().contains(want), "{want}: {}", err.chain());
    }
}
