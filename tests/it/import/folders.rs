//! Maildir and eml-folder import sources: mu's Maildir test data and generated trees.

use postern::import::{
    Content, DateSource, EmlSource, FileSourceOptions, MaildirSource, Position, SourceError,
    SourceMessage,
};
use std::path::{Path, PathBuf};

fn read_maildir(root: &Path, options: &FileSourceOptions) -> Vec<SourceMessage> {
    MaildirSource::open(root, options)
        .unwrap_or_else(|e| panic!("open {}: {e}", root.display()))
        .map(|m| m.unwrap_or_else(|e| panic!("read: {e}")))
        .collect()
}

fn read_eml(root: &Path, options: &FileSourceOptions) -> Vec<SourceMessage> {
    EmlSource::open(root, options)
        .unwrap_or_else(|e| panic!("open {}: {e}", root.display()))
        .map(|m| m.unwrap_or_else(|e| panic!("read: {e}")))
        .collect()
}

fn path_of(m: &SourceMessage) -> PathBuf {
    match &m.position {
        Position::File { path } => path.clone(),
        other => panic!("not a file position: {other}"),
    }
}

fn mu() -> PathBuf {
    crate::common::corpora_dir().join("mu-testdata/testdata")
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn mu_testdir_reads_cur_and_new_with_flags_and_ignores_tmp() {
    let root = mu().join("testdir");
    let msgs = read_maildir(&root, &Default::default());
    let cur = std::fs::read_dir(root.join("cur"))
        .map(|d| d.count())
        .unwrap_or(0);
    let new = std::fs::read_dir(root.join("new"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(msgs.len(), cur + new);
    assert!(msgs.iter().all(|m| !path_of(m).starts_with("tmp")));
    assert!(msgs.iter().all(|m| m.folder.as_deref() == Some("INBOX")));
    // cur/ before new/, each sorted.
    let paths: Vec<PathBuf> = msgs.iter().map(path_of).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    let flags_of = |name: &str| {
        msgs.iter()
            .find(|m| path_of(m).to_string_lossy().ends_with(name))
            .and_then(|m| m.flags)
            .unwrap_or_else(|| panic!("{name} not read"))
    };
    let f = flags_of("1220863087.12663_7.mindcrime!2,RS");
    assert!(f.seen && f.answered && !f.flagged);
    let f = flags_of("multimime!2,FS");
    assert!(f.seen && f.flagged);
    let f = flags_of("1220863087.12663_15.mindcrime!2,PS");
    assert!(f.forwarded && f.seen);
    assert!(!flags_of("1305664394.2171_402.cthulhu!2,").seen);
    assert!(!flags_of("new/1220863087.12663_9.mindcrime").seen);
    assert!(msgs.iter().all(|m| m.raw().is_some_and(|r| !r.is_empty())));
    assert!(msgs.iter().any(|m| m.date_source == DateSource::Header));
}

#[test]
fn mu_nested_maildirs_are_folders_and_dot_files_are_not_messages() {
    let root = mu().join("testdir2");
    let msgs = read_maildir(&root, &Default::default());
    let folders: std::collections::BTreeSet<&str> =
        msgs.iter().filter_map(|m| m.folder.as_deref()).collect();
    assert_eq!(
        folders.into_iter().collect::<Vec<_>>(),
        vec!["Foo", "bar", "wom_bat"]
    );
    assert!(msgs
        .iter()
        .all(|m| !path_of(m).to_string_lossy().contains(".noindex")));
    assert_eq!(msgs.len(), 3 + 8 + 3);

    let only_bar = FileSourceOptions {
        folders: vec!["bar".into()],
        ..Default::default()
    };
    assert_eq!(read_maildir(&root, &only_bar).len(), 8);
    let missing = FileSourceOptions {
        folders: vec!["Nope".into()],
        ..Default::default()
    };
    match MaildirSource::open(&root, &missing) {
        Err(e @ SourceError::FolderNotFound { .. }) => {
            assert!(e.to_string().contains("wom_bat"), "{e}")
        }
        Err(other) => panic!("expected FolderNotFound, got {other}"),
        Ok(_) => panic!("a missing folder was accepted"),
    }
}

#[test]
fn maildir_plus_plus_subfolders_resume_and_oversized() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let msg = |s: &str| format!("Subject: {s}\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\n{s}\n");
    write(
        &root.join("cur/100.a.host:2,S"),
        msg("inbox seen").as_bytes(),
    );
    write(&root.join("new/200.b.host"), msg("inbox new").as_bytes());
    write(
        &root.join("tmp/300.c.host"),
        msg("being delivered").as_bytes(),
    );
    write(
        &root.join(".Sent/cur/150.d.host:2,S"),
        msg("sent").as_bytes(),
    );
    write(
        &root.join(".Archive.2023/cur/120.e.host:2,"),
        msg("archived").as_bytes(),
    );
    write(&root.join(".Archive.2023/new/.hidden"), b"not a message");
    std::fs::create_dir_all(root.join(".Empty/cur")).expect("mkdir");
    let big = format!("Subject: big\n\n{}", "y".repeat(5000));
    write(&root.join(".Sent/cur/160.f.host:2,S"), big.as_bytes());

    let options = FileSourceOptions {
        max_message_size: 1000,
        ..Default::default()
    };
    let msgs = read_maildir(root, &options);
    let seen: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            (
                m.folder.clone().unwrap_or_default(),
                path_of(m).display().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("INBOX", "cur/100.a.host:2,S"),
        ("INBOX", "new/200.b.host"),
        ("Archive/2023", ".Archive.2023/cur/120.e.host:2,"),
        ("Sent", ".Sent/cur/150.d.host:2,S"),
        ("Sent", ".Sent/cur/160.f.host:2,S"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, expected);
    match &msgs[4].content {
        Content::Oversized { size, head } => {
            assert_eq!(*size, big.len() as u64);
            assert!(head.len() <= 1000);
        }
        other => panic!("expected oversized, got {other:?}"),
    }
    assert!(msgs[0].flags.is_some_and(|f| f.seen));
    assert!(msgs[1].flags.is_some_and(|f| !f.seen));

    // Resume after each message yields exactly the ones after it.
    for (i, m) in msgs.iter().enumerate() {
        let options = FileSourceOptions {
            max_message_size: 1000,
            resume_after: Some(m.position.clone()),
            ..Default::default()
        };
        let rest: Vec<PathBuf> = read_maildir(root, &options).iter().map(path_of).collect();
        let want: Vec<PathBuf> = msgs[i + 1..].iter().map(path_of).collect();
        assert_eq!(rest, want, "resume after {}", m.position);
    }
}

#[test]
fn not_a_maildir_and_missing_paths_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    write(&tmp.path().join("some.txt"), b"hello");
    assert!(matches!(
        MaildirSource::open(tmp.path(), &Default::default()),
        Err(SourceError::NotMaildir { .. })
    ));
    assert!(matches!(
        MaildirSource::open(&tmp.path().join("nope"), &Default::default()),
        Err(SourceError::NotFound { .. })
    ));
    assert!(matches!(
        EmlSource::open(&tmp.path().join("some.txt"), &Default::default()),
        Err(SourceError::NotAFolder { .. })
    ));
}

#[test]
fn eml_tree_is_read_recursively_in_a_fixed_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let msg = |s: &str| format!("Subject: {s}\n\n{s}\n");
    for p in ["b.eml", "a/z.eml", "a/deep/er/x.EML", "a.b/a.eml", "0.eml"] {
        write(&root.join(p), msg(p).as_bytes());
    }
    write(&root.join("notes.txt"), b"not mail");
    write(&root.join("outlook.msg"), b"binary");
    write(&root.join(".hidden.eml"), msg("hidden").as_bytes());
    write(&root.join(".git/c.eml"), msg("hidden dir").as_bytes());
    // A saved message with an mbox From_ line first: the line is not part of it.
    write(
        &root.join("c/saved.eml"),
        b"From someone@example.com Mon Jan  1 10:00:00 2024\nSubject: saved\n\nbody\n",
    );
    let msgs = read_eml(root, &Default::default());
    let paths: Vec<String> = msgs
        .iter()
        .map(|m| path_of(m).display().to_string())
        .collect();
    assert_eq!(
        paths,
        vec![
            "0.eml",
            "a/deep/er/x.EML",
            "a/z.eml",
            "a.b/a.eml",
            "b.eml",
            "c/saved.eml"
        ]
    );
    assert_eq!(msgs[5].raw(), Some(b"Subject: saved\n\nbody\n".as_slice()));
    // No Date header: the file's modification time stands in.
    assert_eq!(msgs[0].date_source, DateSource::FileModified);
    assert!(msgs[0].date.is_some());
    // Same order every time, and resume takes exactly the rest.
    assert_eq!(read_eml(root, &Default::default()), msgs);
    for (i, m) in msgs.iter().enumerate() {
        let options = FileSourceOptions {
            resume_after: Some(m.position.clone()),
            ..Default::default()
        };
        assert_eq!(read_eml(root, &options), msgs[i + 1..].to_vec());
    }
}

#[test]
fn stalwart_eml_corpus_is_read_whole() {
    // stalwart's .eml corpus: every message is read whole.
    let dir = crate::common::corpora_dir().join("stalwart-mail-parser");
    let msgs = read_eml(&dir, &Default::default());
    assert!(msgs.len() >= 100, "{} messages", msgs.len());
    assert!(msgs.iter().all(|m| m.raw().is_some()));
}
