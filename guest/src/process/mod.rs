//! One message, start to end (SPEC section 2, steps 1 to 5, and the choice of action in
//! step 6). Everything here returns a durable end: an outcome once it is on disk, or an error
//! once nothing (or only a stale chunk set) was touched.

use crate::bindings;
use crate::bindings::kres::kafka::types::SkipReason;
use crate::bindings::kres::kafka::types::{
    Action, ChunkStored, Context, FileCommitted, Message, Outcome,
};
use crate::config::{self, Format};
use crate::durable::hex;
use crate::error::{Error, Result};
use crate::headers::{self, Me, Parsed, Skip};
use crate::journal::{Journal, Position};
use crate::judge::{self, Resolver};
use crate::name;
use crate::store::{Files, Transfer};
use sha2::{Digest, Sha256};

/// Process one message against the files directory; `resolver` judges configurations.
pub fn process(
    files: &Files,
    resolver: &dyn Resolver,
    ctx: &Context,
    msg: &Message,
) -> Result<Outcome> {
    let pairs = msg
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_slice()));
    let me = Me {
        hostname: &ctx.hostname,
        zone_id: ctx.zone_id.as_deref(),
    };
    if let Some(skip) = headers::recipient(msg.key.as_deref(), pairs, me)? {
        let reason = match skip {
            Skip::NoRecipient(_) => SkipReason::NoRecipient,
            Skip::OtherHost(_) => SkipReason::OtherHost,
            Skip::OtherZone(_) => SkipReason::OtherZone,
        };
        return Ok(Outcome::Skipped(bindings::kres::kafka::types::Skip {
            reason,
            detail: skip.detail().to_owned(),
        }));
    }
    let position = Position::of(&msg.topic, msg.partition, msg.offset);
    let mut journal = Journal::read(files.root())?;
    if let Some(at) = &position
        && journal.applied(at)
    {
        return Ok(Outcome::Skipped(bindings::kres::kafka::types::Skip {
            reason: SkipReason::Replayed,
            detail: format!(
                "replayed: offset {} of {} was done before",
                at.offset, at.partition
            ),
        }));
    }
    let mut finished = Vec::new();
    let result = handle(files, resolver, ctx, msg, &mut finished);
    if matches!(result, Err(Error::Io { .. })) {
        // Not an end: the host keeps the message and offers it again.
        return result;
    }
    if let Some(at) = &position {
        journal.record(files.root(), at, finished.clone())?;
    }
    for name in &finished {
        files.discard_chunks(name)?;
    }
    result
}

/// A message for this resolver, to its outcome. Chunk sets whose transfer ends here are
/// pushed on `finished`, for the caller to remove once the outcome is recorded.
fn handle(
    files: &Files,
    resolver: &dyn Resolver,
    ctx: &Context,
    msg: &Message,
    finished: &mut Vec<String>,
) -> Result<Outcome> {
    let pairs = msg
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_slice()));
    let parsed = headers::parse(pairs)?;
    let name = name::check(parsed.file_name)?;
    files.check_clash(name)?;
    let max_size = ctx.limits.max_file_size;
    if parsed.chunk.total > ctx.limits.max_chunks {
        return Err(Error::TooLarge(format!(
            "file {name:?} announces {} chunks: at most {} are accepted",
            parsed.chunk.total, ctx.limits.max_chunks
        )));
    }
    if msg.value.len() as u64 > max_size {
        return Err(Error::TooLarge(format!(
            "file {name:?}: a value of {} bytes exceeds the maximum file size of {max_size} bytes",
            msg.value.len()
        )));
    }
    if parsed.chunk.is_whole() {
        commit_whole(files, resolver, name, &parsed, &msg.value)
    } else {
        let position = Position::of(&msg.topic, msg.partition, msg.offset);
        store_chunk(
            files,
            resolver,
            ctx,
            name,
            &parsed,
            &msg.value,
            position.as_ref(),
            finished,
        )
    }
}

fn commit_whole(
    files: &Files,
    resolver: &dyn Resolver,
    name: &str,
    parsed: &Parsed,
    value: &[u8],
) -> Result<Outcome> {
    let sha256: [u8; 32] = Sha256::digest(value).into();
    check_digest(name, parsed.sha256, &sha256)?;
    if files.holds(name, value)? {
        return Ok(Outcome::Unchanged(name.to_owned()));
    }
    let doc = match Format::of(name) {
        Some(_) => {
            check_config_size(name, value.len() as u64)?;
            Some(judge::judge(resolver, name, value)?)
        }
        None => None,
    };
    let changed = config_changed(files, name, doc.as_ref())?;
    files.write_temporary(name, value)?;
    owe(resolver, name)?;
    files.commit(name)?;
    Ok(committed(name, value.len() as u64, &sha256, changed))
}

/// Have the host record, durably, the manager call the commit of `name` asks for, before the
/// commit can be seen: a crash right after the rename must not lose the call.
fn owe(resolver: &dyn Resolver, name: &str) -> Result<()> {
    resolver.owe(action_for(name)).map_err(|why| Error::Io {
        what: format!("recording the manager call {name:?} asks for"),
        source: std::io::Error::other(why),
    })
}

/// For a configuration about to replace the file in place: whether the manager's running
/// configuration must change (see [`judge::changes`]).
fn config_changed(files: &Files, name: &str, new: Option<&serde_json::Value>) -> Result<bool> {
    let Some(new) = new else {
        return Ok(false);
    };
    let old = files
        .read_current(name, config::MAX_CONFIG_SIZE)?
        .and_then(|old| config::parse(name, &old).ok());
    Ok(judge::changes(old.as_ref(), new))
}

#[allow(clippy::too_many_arguments)]
fn store_chunk(
    files: &Files,
    resolver: &dyn Resolver,
    ctx: &Context,
    name: &str,
    parsed: &Parsed,
    value: &[u8],
    position: Option<&Position>,
    finished: &mut Vec<String>,
) -> Result<Outcome> {
    let transfer = Transfer {
        total: parsed.chunk.total,
        transfer_id: parsed.transfer_id.map(hex),
        sha256: parsed.sha256.as_ref().map(|d| hex(d)),
    };
    let max_size = ctx.limits.max_file_size;
    let index = parsed.chunk.index;
    let ordered = position.is_some();
    let received = files.store_chunk(name, &transfer, index, value, max_size, ctx.now, ordered)?;
    if received < transfer.total {
        return Ok(Outcome::Stored(ChunkStored {
            file: name.to_owned(),
            index,
            total: transfer.total,
            received,
        }));
    }

    crate::log_info(format!(
        "assembling {name:?} from {} chunks",
        transfer.total
    ));
    let assembled = files.assemble(name, transfer.total, max_size)?;
    // Judged only when it would change the file in place: a replayed transfer of the file
    // already there changes nothing, and a validator need not run for it.
    let unchanged = files.temporary_matches(name)?;
    let checked = check_digest(name, parsed.sha256, &assembled.sha256).and_then(|()| {
        if unchanged || Format::of(name).is_none() {
            return Ok(None);
        }
        check_config_size(name, assembled.size)?;
        let content = files
            .read_temporary(name, config::MAX_CONFIG_SIZE)?
            .expect("size checked above");
        judge::judge(resolver, name, &content).map(Some)
    });
    let doc = match checked {
        Ok(doc) => doc,
        // A validator that could not judge: the set stays, the message can come again.
        Err(e @ Error::Io { .. }) => {
            files.discard_temporary(name)?;
            return Err(e);
        }
        Err(e) => {
            // The transfer is complete and wrong: waiting longer cannot mend it.
            files.discard_temporary(name)?;
            finished.push(name.to_owned());
            return Err(e);
        }
    };
    let outcome = if unchanged {
        files.discard_temporary(name)?;
        Outcome::Unchanged(name.to_owned())
    } else {
        let changed = config_changed(files, name, doc.as_ref())?;
        owe(resolver, name)?;
        files.commit(name)?;
        committed(name, assembled.size, &assembled.sha256, changed)
    };
    finished.push(name.to_owned());
    Ok(outcome)
}

/// The outcome of a file just committed.
fn committed(name: &str, size: u64, sha256: &[u8; 32], config_changed: bool) -> Outcome {
    Outcome::Committed(FileCommitted {
        file: name.to_owned(),
        action: action_for(name),
        size,
        sha256: hex(sha256),
        config_changed,
    })
}

/// A committed configuration file asks for a reload, any other file for a renew.
pub fn action_for(name: &str) -> Action {
    if Format::of(name).is_some() {
        Action::Reload
    } else {
        Action::Renew
    }
}

fn check_digest(name: &str, expected: Option<[u8; 32]>, actual: &[u8; 32]) -> Result<()> {
    match expected {
        Some(expected) if expected != *actual => Err(Error::ChecksumMismatch(format!(
            "file {name:?} has SHA-256 {} but header \"sha256\" says {}",
            hex(actual),
            hex(&expected)
        ))),
        _ => Ok(()),
    }
}

pub fn check_config_size(name: &str, size: u64) -> Result<()> {
    if size > config::MAX_CONFIG_SIZE {
        return Err(Error::TooLarge(format!(
            "configuration {name:?} is {size} bytes: configuration files are parsed whole and \
             may be at most {} bytes",
            config::MAX_CONFIG_SIZE
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
