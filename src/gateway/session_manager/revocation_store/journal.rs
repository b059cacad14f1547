//! The append-only journal: `revocations.jsonl`, one revocation per line.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Revocation;
use crate::secret_file::{self, SECRET_MODE};

/// One journal line: a revocation and when it was made. In cluster mode
/// the same JSON is the value of a `{cg}:rev` field and of a stream entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Unix seconds when the revocation was made (for audit).
    pub at: u64,
    /// What is revoked, until when.
    #[serde(flatten)]
    pub revocation: Revocation,
}

/// What loading found, and what went wrong.
#[derive(Default)]
pub(super) struct LoadOutcome {
    pub(super) live: Vec<Record>,
    pub(super) expired_dropped: usize,
    pub(super) corrupt_lines: usize,
    pub(super) torn_tail: bool,
    pub(super) compacted: bool,
    pub(super) load_issue: Option<String>,
    pub(super) write_issue: Option<String>,
}

/// A failed append.
pub(super) struct WriteFailure {
    pub(super) reason: String,
    pub(super) source: io::Error,
}

pub(super) struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
    /// Test hook simulating a full disk: the next appends write half a line
    /// and fail with `StorageFull`.
    #[cfg(test)]
    pub(super) fail_writes: bool,
}

impl Journal {
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            path: dir.join(JOURNAL_FILE),
            file: None,
            #[cfg(test)]
            fail_writes: false,
        }
    }

    /// Reads the journal and rewrites it without expired, duplicate or torn
    /// lines. Never fails: problems are returned as issue strings.
    pub(super) fn load_and_compact(&self, now: u64) -> LoadOutcome {
        let mut outcome = match read(&self.path, now) {
            Ok(outcome) => outcome,
            Err(e) => {
                // Not compacted: rewriting a journal we could not read
                // would destroy the revocations in it.
                return LoadOutcome {
                    load_issue: Some(format!("cannot read {}: {e}", self.path.display())),
                    ..LoadOutcome::default()
                };
            }
        };
        if outcome.corrupt_lines > 0 {
            match self.keep_corrupt_copy(now) {
                Ok(copy) => {
                    outcome.load_issue = Some(format!(
                        "{} unreadable line(s) in {}; their revocations are not in force \
                         (original kept as {})",
                        outcome.corrupt_lines,
                        self.path.display(),
                        copy.display()
                    ));
                }
                Err(e) => {
                    outcome.load_issue = Some(format!(
                        "{} unreadable line(s) in {}; not compacted (cannot keep a copy: {e})",
                        outcome.corrupt_lines,
                        self.path.display()
                    ));
                    return outcome;
                }
            }
        }
        match self.compact(&outcome.live) {
            Ok(()) => outcome.compacted = true,
            Err(e) => {
                outcome.write_issue = Some(format!("cannot compact {}: {e}", self.path.display()));
            }
        }
        outcome
    }

    /// Opens the journal for appending (creating the directory 0700 and
    /// the file 0600 when missing).
    pub(super) fn open_for_append(&mut self) -> Result<(), String> {
        self.handle()
            .map(|_| ())
            .map_err(|e| format!("cannot open {} for appending: {e}", self.path.display()))
    }

    /// Appends records with one write and one fsync (one record for a
    /// local revocation; a group commit when the cluster mirror journals a
    /// batch of remote ones).
    pub(super) fn append_all(&mut self, records: &[Record]) -> Result<(), WriteFailure> {
        let mut lines = Vec::with_capacity(records.len() * 128);
        for record in records {
            serde_json::to_writer(&mut lines, record)
                .map_err(|e| self.failure("encode", e.into()))?;
            lines.push(b'\n');
        }
        let result = self.write_line(&lines);
        result.map_err(|e| self.failure("append to", e))
    }

    /// The journal file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Test hook: the next appends go to `file` (e.g. `/dev/full`, where a
    /// write fails with ENOSPC and truncation with EINVAL).
    #[cfg(test)]
    pub(super) fn use_handle(&mut self, file: File) {
        self.file = Some(file);
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        let fail = self.fail_writes;
        let file = self.handle()?;
        let before = file.metadata()?.len();
        #[cfg(test)]
        let result = if fail {
            file.write_all(&line[..line.len() / 2])
                .and_then(|()| Err(io::Error::from(io::ErrorKind::StorageFull)))
        } else {
            file.write_all(line).and_then(|()| file.sync_data())
        };
        #[cfg(not(test))]
        let result = file.write_all(line).and_then(|()| file.sync_data());
        if result.is_err() && file.set_len(before).is_err() {
            // A partial line may remain; drop the handle so the next open
            // starts a fresh line instead of gluing a record onto it.
            self.file = None;
        }
        result
    }

    fn handle(&mut self) -> io::Result<&mut File> {
        match &mut self.file {
            Some(file) => Ok(file),
            slot @ None => {
                secret_file::ensure_private_dir(&self.dir)?;
                let file = open_append(&self.path)?;
                secret_file::sync_dir(&self.dir)?;
                Ok(slot.insert(file))
            }
        }
    }

    fn compact(&self, live: &[Record]) -> io::Result<()> {
        let mut out = Vec::with_capacity(live.len() * 128);
        for record in live {
            serde_json::to_writer(&mut out, record)?;
            out.push(b'\n');
        }
        secret_file::write_atomic(&self.path, &out, SECRET_MODE)
    }

    fn keep_corrupt_copy(&self, now: u64) -> io::Result<PathBuf> {
        let copy = self
            .path
            .with_file_name(format!("{JOURNAL_FILE}.corrupt-{now}"));
        fs::copy(&self.path, &copy)?;
        Ok(copy)
    }

    fn failure(&self, what: &str, source: io::Error) -> WriteFailure {
        WriteFailure {
            reason: format!("cannot {what} {}: {source}", self.path.display()),
            source,
        }
    }
}

/// Reads every line; a missing journal is an empty one.
pub(super) fn read(path: &Path, now: u64) -> io::Result<LoadOutcome> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LoadOutcome::default()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut outcome = LoadOutcome::default();
    let mut live: HashMap<RecordKey, Record> = HashMap::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        // Only the final chunk of a file can lack its newline.
        let complete = buf.last() == Some(&b'\n');
        match parse_line(&buf) {
            Line::Blank => {}
            Line::Record(r) if r.revocation.until() < now => outcome.expired_dropped += 1,
            Line::Record(r) => merge(&mut live, r),
            Line::Bad if complete => outcome.corrupt_lines += 1,
            Line::Bad => outcome.torn_tail = true,
        }
    }
    outcome.live = live.into_values().collect();
    outcome.live.sort_by_key(|r| r.at);
    Ok(outcome)
}

enum Line {
    Blank,
    Record(Record),
    Bad,
}

fn parse_line(raw: &[u8]) -> Line {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Line::Blank;
    }
    if line.len() > MAX_LINE_BYTES {
        return Line::Bad;
    }
    match serde_json::from_slice::<Record>(line) {
        Ok(r) if r.revocation.validate().is_ok() => Line::Record(r),
        _ => Line::Bad,
    }
}

/// One revoked id: its kind and the id.
type RecordKey = (std::mem::Discriminant<Revocation>, String);

/// Keeps one record per id: the widest `until` and `issued_before`.
fn merge(live: &mut HashMap<RecordKey, Record>, new: Record) {
    let key = (
        std::mem::discriminant(&new.revocation),
        new.revocation.id().to_owned(),
    );
    let merged = match live.remove(&key) {
        None => new,
        Some(old) => widen(&old, new),
    };
    live.insert(key, merged);
}

/// Merges two records of one id. They share a key, hence a kind, so only
/// the times widen: the later `at`, the later `until` and `issued_before`.
fn widen(old: &Record, new: Record) -> Record {
    let at = old.at.max(new.at);
    let until = old.revocation.until().max(new.revocation.until());
    let revocation = match new.revocation {
        Revocation::Token { jti, .. } => Revocation::token(jti, until),
        Revocation::Session { sid, .. } => Revocation::session(sid, until),
        Revocation::Subject {
            sub, issued_before, ..
        } => {
            let cut = issued_before.max(old.revocation.issued_before());
            Revocation::subject(sub, cut, until)
        }
    };
    Record { at, revocation }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(SECRET_MODE);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // A journal created by hand (or an older version) gets 0600 too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(SECRET_MODE))?;
    }
    end_on_line_boundary(&mut file)?;
    Ok(file)
}

/// If the file ends inside a line, settles that line before the next record
/// goes after it: a whole record that only lacks its newline (a hand-edited
/// journal) gets one; anything else is the torn rest of a write that was
/// never acknowledged (the append failed, or the process died before its
/// fsync returned) and is cut off, as loading already ignores it. Ending it
/// with a newline instead would turn it into a "corrupt" line at the next
/// start: a false alarm.
fn end_on_line_boundary(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    let tail_start = last_line_start(file, len)?;
    if tail_start == len {
        return Ok(());
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(tail_start))?;
    // One byte over the line cap is enough to call it over-long.
    Read::by_ref(file)
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_to_end(&mut tail)?;
    if matches!(parse_line(&tail), Line::Record(_)) {
        file.write_all(b"\n")?;
    } else {
        file.set_len(tail_start)?;
    }
    file.sync_data()
}

/// The offset just past the file's last newline (0 when it has none).
fn last_line_start(file: &mut File, len: u64) -> io::Result<u64> {
    let mut chunk = [0u8; 4_096];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let window = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(window)?;
        if let Some(i) = window.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// File name of the journal inside the state directory.
pub(super) const JOURNAL_FILE: &str = "revocations.jsonl";
/// Longest journal line accepted: a record is ≈ 100 bytes plus its id
/// (≤ 256 bytes, up to 6× when JSON-escaped); 4 KiB covers that.
const MAX_LINE_BYTES: usize = 4_096;
