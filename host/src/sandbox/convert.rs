//! Conversions between the WIT bindings and the host's own types (`crate::outcome`): the only
//! place where both meet.

use super::bindings::kres::kafka::types as wit;
use crate::outcome::{
    Action, Context, Limits, Maintenance, Message, Outcome, RejectKind, Rejection, Restored,
    SkipReason,
};

/// The guest's view of the resolver.
pub(super) fn context(ctx: &Context) -> wit::Context {
    let Limits {
        max_file_size,
        max_chunks,
    } = ctx.limits;
    wit::Context {
        hostname: ctx.hostname.clone(),
        zone_id: ctx.zone_id.clone(),
        limits: wit::Limits {
            max_file_size,
            max_chunks,
        },
        now: ctx.now,
        trust: wit::Trust {
            keys: ctx.trust.keys.iter().map(|k| k.to_vec()).collect(),
            require_signature: ctx.trust.require_signature,
        },
    }
}

/// What a message led to, as the guest said.
pub(super) fn outcome(o: wit::Outcome) -> Outcome {
    match o {
        wit::Outcome::Skipped(skip) => Outcome::Skipped {
            why: match skip.reason {
                wit::SkipReason::NoRecipient => SkipReason::NoRecipient,
                wit::SkipReason::OtherHost => SkipReason::OtherHost,
                wit::SkipReason::OtherZone => SkipReason::OtherZone,
                wit::SkipReason::Replayed => SkipReason::Replayed,
            },
            reason: skip.detail,
        },
        wit::Outcome::Stored(s) => Outcome::Stored {
            file: s.file,
            index: s.index,
            total: s.total,
            received: s.received,
        },
        wit::Outcome::Committed(c) => Outcome::Committed {
            file: c.file,
            action: action(c.action),
            size: c.size,
            sha256: c.sha256,
            config_changed: c.config_changed,
        },
        wit::Outcome::Unchanged(file) => Outcome::Unchanged { file },
        wit::Outcome::Removed(r) => Outcome::Removed {
            file: r.file,
            action: action(r.action),
        },
    }
}

/// Why the guest refused a message.
pub(super) fn rejection(e: wit::ProcessError) -> Rejection {
    let (kind, reason) = match e {
        wit::ProcessError::BadHeader(r) => (RejectKind::BadHeader, r),
        wit::ProcessError::BadName(r) => (RejectKind::BadName, r),
        wit::ProcessError::InvalidConfig(r) => (RejectKind::InvalidConfig, r),
        wit::ProcessError::ChecksumMismatch(r) => (RejectKind::ChecksumMismatch, r),
        wit::ProcessError::InvalidZone(r) => (RejectKind::InvalidZone, r),
        wit::ProcessError::TooLarge(r) => (RejectKind::TooLarge, r),
        wit::ProcessError::Io(r) => (RejectKind::Io, r),
        wit::ProcessError::Unsigned(r) => (RejectKind::Unsigned, r),
        wit::ProcessError::UnknownKey(r) => (RejectKind::UnknownKey, r),
        wit::ProcessError::BadSignature(r) => (RejectKind::BadSignature, r),
        wit::ProcessError::WrongRecipient(r) => (RejectKind::WrongRecipient, r),
        wit::ProcessError::Stale(r) => (RejectKind::Stale, r),
    };
    Rejection { kind, reason }
}

/// A message for the guest, its value handed over as `value`.
pub(super) fn message(
    msg: &Message,
    value: wasmtime::component::Resource<super::state::Payload>,
) -> wit::Message {
    wit::Message {
        key: msg.key.clone(),
        headers: msg
            .headers
            .iter()
            .map(|(name, value)| wit::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        value,
        topic: msg.topic.clone(),
        partition: msg.partition,
        offset: msg.offset,
    }
}

/// What the guest said of one message.
pub(super) fn result(r: Result<wit::Outcome, wit::ProcessError>) -> Outcome {
    match r {
        Ok(done) => outcome(done),
        Err(refused) => Outcome::Rejected(rejection(refused)),
    }
}

/// What a maintenance pass did.
pub(super) fn maintenance(r: wit::MaintenanceReport) -> Maintenance {
    Maintenance {
        temporaries_removed: r.temporaries_removed,
        chunk_sets_expired: r.chunk_sets_expired,
        chunk_sets_kept: r.chunk_sets_kept,
    }
}

/// What restoring one file did.
pub(super) fn restored(r: wit::Restored) -> Restored {
    match r {
        wit::Restored::FromBackup => Restored::FromBackup,
        wit::Restored::Removed => Restored::Removed,
        wit::Restored::Absent => Restored::Absent,
    }
}

/// A manager call.
pub(super) fn action(a: wit::Action) -> Action {
    match a {
        wit::Action::None => Action::None,
        wit::Action::Renew => Action::Renew,
        wit::Action::Reload => Action::Reload,
    }
}
