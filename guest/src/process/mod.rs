//! A batch of messages, start to end (SPEC section 2, steps 1 to 5, and the choice of action
//! in step 6). Every outcome returned is a durable end: the batch is on disk (see
//! [`crate::batch`]) before they are returned.

use crate::batch::{Batch, Platform};
use crate::bindings::kres::kafka::types::{
    Action, ChunkStored, Context, FileCommitted, FileRemoved, Outcome, Skip as WitSkip, SkipReason,
};
use crate::config::{self, Format};
use crate::digest::{Compress, Sha256State};
use crate::durable::hex;
use crate::error::{Error, Result};
use crate::headers::{self, Me, Parsed, Skip};
use crate::journal::{Journal, Position};
use crate::judge::{self, Resolver};
use crate::name;
use crate::signature::{self, Recipient, Signed, Trust};
use crate::store::Files;
use crate::store::Transfer;

/// A message's value, held by the host: read only when needed.
pub trait Value {
    /// Its length in bytes.
    fn size(&self) -> u64;
    /// Its bytes.
    fn read(&self) -> Vec<u8>;
    /// Write it into the file `rel` (relative to the files directory) at `offset`, creating
    /// the file if needed and ending it right after the value, and continue `hashed` over it.
    /// By default here, with `compress`; the host's payload does it without copying the value
    /// into the guest.
    fn write_to(
        &self,
        files: &Files,
        rel: &str,
        offset: u64,
        hashed: &mut Sha256State,
        compress: Compress<'_>,
    ) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let bytes = self.read();
        let mut file = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(files.root().join(rel))?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&bytes)?;
        file.set_len(offset + bytes.len() as u64)?;
        hashed.update(compress, &bytes);
        Ok(())
    }
}

impl Value for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read(&self) -> Vec<u8> {
        self.clone()
    }
}

impl Value for std::sync::Arc<[u8]> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read(&self) -> Vec<u8> {
        self.to_vec()
    }
}

/// One Kafka message as the guest sees it.
pub struct Msg<'a> {
    pub key: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub value: &'a dyn Value,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Process a batch of messages against the files directory, as one group commit (see
/// [`crate::batch`]); `resolver` judges configurations, `platform` hashes and flushes. Returns
/// the outcomes of a prefix of `msgs`: all of them, or fewer when the batch had to end early
/// (the rest come again as the next batch), or a single `io` error when nothing in the batch
/// could be made durable (the whole batch comes again).
pub fn process(
    files: &Files,
    resolver: &dyn Resolver,
    platform: &dyn Platform,
    ctx: &Context,
    msgs: &[Msg<'_>],
) -> Vec<Result<Outcome>> {
    let journal = match Journal::read(files.root()) {
        Ok(journal) => journal,
        Err(e) => return vec![Err(e)],
    };
    let trust = Trust::new(&ctx.trust.keys, ctx.trust.require_signature);
    let mut batch = Batch::new(files, platform);
    let mut outcomes = Vec::with_capacity(msgs.len());
    for msg in msgs {
        batch.next_message(Position::of(msg.topic, msg.partition, msg.offset));
        match one(&mut batch, &journal, &trust, resolver, ctx, msg) {
            Err(Error::Cut) if !outcomes.is_empty() => break,
            // What this message did in the batch cannot be told apart from the rest: none of
            // it is kept, and the whole batch comes again (as after a crash).
            Err(e @ (Error::Io { .. } | Error::Cut)) => return vec![Err(e)],
            done => outcomes.push(done),
        }
    }
    match batch.commit(journal) {
        Ok(()) => outcomes,
        Err(e) => vec![Err(e)],
    }
}

/// One message of a batch, to its outcome.
fn one(
    batch: &mut Batch<'_>,
    journal: &Journal,
    trust: &std::result::Result<Trust, String>,
    resolver: &dyn Resolver,
    ctx: &Context,
    msg: &Msg<'_>,
) -> Result<Outcome> {
    let me = Me {
        hostname: &ctx.hostname,
        zone_id: ctx.zone_id.as_deref(),
    };
    if let Some(skip) = headers::recipient(msg.key, msg.headers.iter().copied(), me)? {
        let reason = match skip {
            Skip::NoRecipient(_) => SkipReason::NoRecipient,
            Skip::OtherHost(_) => SkipReason::OtherHost,
            Skip::OtherZone(_) => SkipReason::OtherZone,
        };
        return Ok(Outcome::Skipped(WitSkip {
            reason,
            detail: skip.detail().to_owned(),
        }));
    }
    let position = Position::of(msg.topic, msg.partition, msg.offset);
    if let Some(at) = &position
        && journal.applied(at)
    {
        return Ok(Outcome::Skipped(WitSkip {
            reason: SkipReason::Replayed,
            detail: format!(
                "replayed: offset {} of {} was done before",
                at.offset, at.partition
            ),
        }));
    }
    let result = handle(
        batch,
        journal,
        trust,
        resolver,
        ctx,
        msg,
        position.is_some(),
    );
    if let Some(at) = position
        && !matches!(result, Err(Error::Io { .. } | Error::Cut))
    {
        batch.record(at);
    }
    result
}

/// A message for this resolver, to its outcome.
fn handle(
    batch: &mut Batch<'_>,
    journal: &Journal,
    trust: &std::result::Result<Trust, String>,
    resolver: &dyn Resolver,
    ctx: &Context,
    msg: &Msg<'_>,
    ordered: bool,
) -> Result<Outcome> {
    let parsed = headers::parse(msg.headers.iter().copied())?;
    let name = name::check(parsed.file_name)?;
    // A message of a batch killed after its renames and before its journal entry, come
    // again: it is judged as it was, but a later message's version is in place already, and
    // its own must not replace it.
    let superseded = Position::of(msg.topic, msg.partition, msg.offset)
        .is_some_and(|at| journal.placed_after(name, &at));
    let signed = verify(batch, journal, trust, ctx, name, &parsed, msg)?;
    batch.check_clash(name)?;
    if parsed.remove {
        return withdraw(batch, journal, resolver, name, msg, signed);
    }
    let max_size = ctx.limits.max_file_size;
    if parsed.chunk.total > ctx.limits.max_chunks {
        return Err(Error::TooLarge(format!(
            "file {name:?} announces {} chunks: at most {} are accepted",
            parsed.chunk.total, ctx.limits.max_chunks
        )));
    }
    let size = msg.value.size();
    if size > max_size {
        return Err(Error::TooLarge(format!(
            "file {name:?}: a value of {size} bytes exceeds the maximum file size of {max_size} bytes"
        )));
    }
    if parsed.chunk.is_whole() {
        commit_whole(
            batch, resolver, name, &parsed, msg.value, signed, superseded,
        )
    } else {
        store_chunk(
            batch, resolver, ctx, name, &parsed, msg.value, ordered, signed, superseded,
        )
    }
}

/// Check the message's signature (see [`crate::signature`]) before anything of it is stored:
/// by a trusted key, for this resolver, and newer than the version in place or staged.
fn verify(
    batch: &mut Batch<'_>,
    journal: &Journal,
    trust: &std::result::Result<Trust, String>,
    ctx: &Context,
    name: &str,
    parsed: &Parsed<'_>,
    msg: &Msg<'_>,
) -> Result<Option<Signed>> {
    let trust = trust
        .as_ref()
        .map_err(|why| Error::BadSignature(format!("the trusted keys cannot be used: {why}")))?;
    let zone = ctx.zone_id.as_deref();
    let key = msg.key.and_then(|k| std::str::from_utf8(k).ok());
    let by_zone_header = zone.is_some_and(|zone| {
        msg.headers
            .iter()
            .any(|(n, v)| *n == headers::ZONE_ID && *v == zone.as_bytes())
    });
    let recipient = match (key, zone) {
        (Some(key), Some(zone)) if key == zone => Recipient::Zone(zone.to_owned()),
        (_, Some(zone)) if by_zone_header => Recipient::Zone(zone.to_owned()),
        _ => Recipient::Host(ctx.hostname.clone()),
    };
    let mut others = Vec::new();
    if let Some(key) = key {
        others.push(Recipient::Zone(key.to_owned()));
        others.push(Recipient::Host(key.to_owned()));
    }
    for (header, value) in msg.headers.iter() {
        if *header == headers::HOSTNAME
            && let Ok(host) = std::str::from_utf8(value)
        {
            others.push(Recipient::Host(host.to_owned()));
        }
    }
    let platform = batch.platform();
    let verify =
        |key: &[u8; 32], text: &[u8], sig: &[u8; 64]| platform.verify_ed25519(key, text, sig);
    let signed = signature::check(
        trust,
        name,
        parsed,
        &recipient,
        &others,
        batch.verified(),
        &verify,
    )?;
    if let Some(signed) = &signed {
        let current = batch
            .signed(name)
            .or_else(|| journal.signed.get(name).and_then(|s| s.to_signed()));
        signature::check_fresh(name, signed, current.as_ref())?;
    }
    Ok(signed)
}

/// A whole file: unchanged, or judged and staged. Its bytes enter the guest only when they
/// must: to check a `sha256` header, to judge a configuration, or to compare with a file of
/// the same size in place; otherwise the host stages and hashes its own copy.
fn commit_whole(
    batch: &mut Batch<'_>,
    resolver: &dyn Resolver,
    name: &str,
    parsed: &Parsed,
    value: &dyn Value,
    signed: Option<Signed>,
    superseded: bool,
) -> Result<Outcome> {
    let size = value.size();
    let config = Format::of(name).is_some();
    let zone = judge::is_zone(name);
    let content = (parsed.sha256.is_some() || config || zone || batch.may_hold(name, size))
        .then(|| value.read());
    if let Some(content) = &content {
        if parsed.sha256.is_some() {
            check_digest(name, parsed.sha256, &batch.sha256(content))?;
        }
        if batch.holds(name, content)? {
            batch.sign(name, signed);
            return Ok(Outcome::Unchanged(name.to_owned()));
        }
    }
    let doc = match (config, &content) {
        (true, Some(content)) => {
            check_config_size(name, size)?;
            Some(judge::judge(resolver, name, content)?)
        }
        // Judged once staged, by the host at native speed (below), unless an earlier message
        // of the batch staged or withdrew the name: a refusal must not undo that.
        (false, Some(content)) if zone && batch.is_staged(name) => {
            judge::judge_zone(name, content)?;
            None
        }
        _ => None,
    };
    if superseded {
        return Ok(Outcome::Unchanged(name.to_owned()));
    }
    let judge_staged = zone && !config && !batch.is_staged(name);
    let changed = config_changed(batch, name, doc.as_ref())?;
    let sha256 = batch.stage_value(name, value)?;
    if judge_staged {
        let staged = batch.files.sibling(name, ".tmp");
        let judged = judge::judge_zone_assembled(
            batch.platform(),
            name,
            &format!("{name}.tmp"),
            &staged,
            &sha256,
        );
        if let Err(e) = judged {
            batch.drop_staged(name)?;
            return Err(e);
        }
    }
    batch.sign(name, signed);
    owe(resolver, name)?;
    Ok(committed(name, size, &sha256, changed))
}

/// A removal (`remove: 1`): the file goes, its version kept as `.backup`, and the manager is
/// asked for what a commit of it would ask for; no file there is `unchanged`. A chunk set in
/// progress under the name is of a version older than the removal: it goes too.
fn withdraw(
    batch: &mut Batch<'_>,
    journal: &Journal,
    resolver: &dyn Resolver,
    name: &str,
    msg: &Msg<'_>,
    signed: Option<Signed>,
) -> Result<Outcome> {
    if msg.value.size() != 0 {
        return Err(Error::BadHeader(format!(
            "the removal of {name:?} carries {} bytes: a removal's value is empty",
            msg.value.size()
        )));
    }
    // A later message's version is in place already (a batch killed after its renames, come
    // again): the removal was before it. The removal itself, come again, is done again.
    let later = Position::of(msg.topic, msg.partition, msg.offset).is_some_and(|at| {
        journal
            .placed
            .get(name)
            .is_some_and(|p| p.partition == at.partition && p.offset > at.offset)
    });
    if batch.set(name)?.is_some() {
        batch.restart_set(name, None)?;
    }
    if later || !batch.exists(name) {
        batch.sign(name, signed);
        return Ok(Outcome::Unchanged(name.to_owned()));
    }
    owe(resolver, name)?;
    batch.remove(name, signed)?;
    crate::log_info(format!("{name:?} withdrawn"));
    Ok(Outcome::Removed(FileRemoved {
        file: name.to_owned(),
        action: action_for(name),
    }))
}

/// Have the host record, durably, the manager call the commit of `name` asks for, before the
/// commit can be seen: a crash right after the rename must not lose the call.
fn owe(resolver: &dyn Resolver, name: &str) -> Result<()> {
    resolver.owe(action_for(name)).map_err(|why| Error::Io {
        what: format!("recording the manager call {name:?} asks for"),
        source: std::io::Error::other(why),
    })
}

/// For a configuration about to replace the current version: whether the manager's running
/// configuration must change (see [`judge::changes`]).
fn config_changed(batch: &Batch<'_>, name: &str, new: Option<&serde_json::Value>) -> Result<bool> {
    let Some(new) = new else {
        return Ok(false);
    };
    let old = batch
        .read_current(name, config::MAX_CONFIG_SIZE)?
        .and_then(|old| config::parse(name, &old).ok());
    Ok(judge::changes(old.as_ref(), new))
}

/// What to do with a chunk, given the set of its name.
enum Fit {
    /// Store it in the set.
    Store,
    /// The set holds it already, byte for byte: a redelivery.
    Again,
    /// It starts a new transfer: the set there (if any) goes.
    Restart,
}

/// Store one chunk; commit the file once its set is complete.
///
/// With `ordered` (the chunk came from Kafka, where a partition keeps a publisher's order and
/// the journal filters replays), chunks of one transfer arrive by increasing index, so a chunk
/// numbered below one already stored, or equal to one stored with other content, starts a new
/// transfer. Without a `transfer-id` (upstream's publisher sends none) that is what keeps a
/// transfer whose first chunks were lost from being completed by the next one's.
fn store_chunk(
    batch: &mut Batch<'_>,
    resolver: &dyn Resolver,
    ctx: &Context,
    name: &str,
    parsed: &Parsed,
    value: &dyn Value,
    ordered: bool,
    signed: Option<Signed>,
    superseded: bool,
) -> Result<Outcome> {
    let transfer = Transfer {
        total: parsed.chunk.total,
        transfer_id: parsed.transfer_id.map(hex),
        sha256: parsed.sha256.as_ref().map(|d| hex(d)),
    };
    let index = parsed.chunk.index;
    let files = batch.files;
    // A chunk after a transfer of the same name ended in this batch is not of it (its bytes
    // may equal that transfer's): it waits for the next batch, when that set is gone, and
    // meets what it would have met had the batch ended there.
    if ordered && batch.set(name)?.is_some_and(|set| set.finished) {
        return Err(Error::Cut);
    }
    let position = batch.position().cloned();
    let fit = match batch.set(name)? {
        // Started by a later message of a batch killed before its journal entry: this one,
        // come again, was processed without it the first time, and is again.
        Some(set) if set.meta.started_after(position.as_ref()) => Fit::Restart,
        Some(set) if set.meta.transfer == transfer => {
            if set.has(index) && ordered && set.meta.later_than_last(position.as_ref()) {
                crate::log_info(format!(
                    "discarding chunk set of {name:?}: chunk {index} came again in a later message: a new transfer"
                ));
                Fit::Restart
            } else if set.has(index) {
                if set.holds(files, index, &value.read())? {
                    Fit::Again
                } else {
                    crate::log_info(format!(
                        "discarding chunk set of {name:?}: chunk {index} came again with other content: a new transfer"
                    ));
                    Fit::Restart
                }
            } else if ordered && set.highest() > index {
                crate::log_info(format!(
                    "discarding chunk set of {name:?}: chunk {index} starts a new transfer (chunks up to {} were stored)",
                    set.highest()
                ));
                Fit::Restart
            } else {
                Fit::Store
            }
        }
        Some(stale) => {
            crate::log_info(format!(
                "discarding chunk set of {name:?}: it was for {:?}, now {transfer:?}",
                stale.meta.transfer
            ));
            Fit::Restart
        }
        None => Fit::Restart,
    };
    if let Fit::Restart = fit {
        if ordered && index > 1 {
            // Its transfer's first chunks went by unseen (the daemon joined late, or the broker
            // dropped them): a set started here could never complete.
            batch.restart_set(name, None)?;
            return Err(Error::BadHeader(format!(
                "chunk {index} of {} of {name:?} comes without the chunks before it: \
                 its transfer cannot complete here, and no chunk set is kept for it",
                transfer.total
            )));
        }
        batch.restart_set(name, Some((&transfer, ctx.now)))?;
    }
    if !matches!(fit, Fit::Again) {
        let max_size = ctx.limits.max_file_size;
        let set = batch.set(name)?.expect("the set was loaded or started");
        let size = set.size() + value.size();
        if size > max_size {
            batch.restart_set(name, None)?;
            return Err(Error::TooLarge(format!(
                "file {name:?} would exceed the maximum file size of {max_size} bytes \
                 (at least {size} bytes in chunks); its chunk set was discarded"
            )));
        }
        batch.store_chunk(name, index, value)?;
    }
    let set = batch.set(name)?.expect("the set was loaded or started");
    // A chunk below the last one received, come again to a set that is complete (a batch
    // killed after storing the rest and before its journal entry): it is stored, as it was
    // the first time; the last chunk, when it comes again, ends the transfer as it did.
    let early = ordered && matches!(fit, Fit::Again) && index < set.highest();
    if !set.complete() || early {
        return Ok(Outcome::Stored(ChunkStored {
            file: name.to_owned(),
            index,
            total: transfer.total,
            received: set.received(),
        }));
    }
    if set.finished {
        // Its last chunk again, within the batch that ended its transfer: the same end.
        return match batch.ended(name) {
            Some(Err((kind, reason))) => Err(Error::again(kind, reason)),
            _ => Ok(Outcome::Unchanged(name.to_owned())),
        };
    }
    let end = finish_transfer(batch, resolver, name, parsed, signed, superseded);
    batch.end(
        name,
        end.as_ref()
            .map(|_| ())
            .map_err(|e| (e.kind(), e.to_string())),
    );
    end
}

/// A complete chunk set: check it, then commit it, unless it is the file in place already.
/// Its set goes with the batch, whatever the result (waiting longer cannot mend it).
fn finish_transfer(
    batch: &mut Batch<'_>,
    resolver: &dyn Resolver,
    name: &str,
    parsed: &Parsed,
    signed: Option<Signed>,
    superseded: bool,
) -> Result<Outcome> {
    let files = batch.files;
    let (sha256, size, part) = batch.assembled(name)?;
    crate::log_info(format!("{name:?} is complete: {size} bytes"));
    batch.finish_set(name);
    check_digest(name, parsed.sha256, &sha256)?;
    // Judged only when it would change the file in place: a replayed transfer of the file
    // already there changes nothing, and a validator need not run for it.
    if batch.holds_file(name, &part)? {
        batch.sign(name, signed);
        return Ok(Outcome::Unchanged(name.to_owned()));
    }
    let doc = match Format::of(name) {
        Some(_) => {
            check_config_size(name, size)?;
            let content = files
                .read_file(&part, name, config::MAX_CONFIG_SIZE)?
                .unwrap_or_default();
            Some(judge::judge(resolver, name, &content)?)
        }
        None if judge::is_zone(name) => {
            let rel = crate::store::chunks::part_rel(name);
            judge::judge_zone_assembled(batch.platform(), name, &rel, &part, &sha256)?;
            None
        }
        None => None,
    };
    if superseded {
        return Ok(Outcome::Unchanged(name.to_owned()));
    }
    let changed = config_changed(batch, name, doc.as_ref())?;
    batch.stage_assembled(name, &part)?;
    batch.sign(name, signed);
    owe(resolver, name)?;
    Ok(committed(name, size, &sha256, changed))
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
mod batch_tests;
#[cfg(any(test, feature = "fuzzing"))]
pub mod model;
#[cfg(test)]
mod removal_tests;
#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod tests;
