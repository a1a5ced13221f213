//! `send --wait`'s bookkeeping: where each expected resolver stands with each file sent, and
//! which resolvers have ever reported (to name a hostname nobody answers to, and to learn a
//! zone's resolvers).

use super::{Event, Record};
use crate::outcome::Action;

/// Where one resolver stands with one file of a `send --wait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Nothing heard yet.
    Waiting,
    /// Committed; the call it asked for (`action`) not reported yet.
    Committed { action: Action },
    /// Done: committed and its call served, or unchanged, or committed asking for nothing.
    Done { how: String },
    /// Will not be done: rejected, failed, or its call refused or rolled back; or not now:
    /// delivery paused at it (it is done once the resolver can write again, after `send`
    /// returned).
    Failed { why: String },
}

impl Progress {
    /// Whether nothing more is to come for it.
    pub fn settled(&self) -> bool {
        matches!(self, Progress::Done { .. } | Progress::Failed { .. })
    }

    /// As in the table.
    pub fn show(&self) -> String {
        match self {
            Progress::Waiting => "waiting".into(),
            Progress::Committed { action } => format!(
                "committed, waiting for the {}",
                serde_json::to_value(action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            Progress::Done { how } => how.clone(),
            Progress::Failed { why } => why.clone(),
        }
    }
}

/// What the expected resolvers said about a set of transfers: `send --wait`'s bookkeeping.
#[derive(Debug)]
pub struct Tracker {
    /// Transfer id → file name.
    files: std::collections::BTreeMap<String, String>,
    /// (resolver, file) → where it stands.
    pub rows: std::collections::BTreeMap<(String, String), Progress>,
    /// The served calls seen for these transfers.
    served: Vec<Record>,
}

impl Tracker {
    /// `transfers` are `(file, transfer-id)`; every resolver of `expected` must answer for each.
    pub fn new(expected: &[String], transfers: &[(String, String)]) -> Tracker {
        let rows = expected
            .iter()
            .flat_map(|r| {
                transfers
                    .iter()
                    .map(move |(file, _)| ((r.clone(), file.clone()), Progress::Waiting))
            })
            .collect();
        Tracker {
            files: transfers
                .iter()
                .map(|(file, id)| (id.clone(), file.clone()))
                .collect(),
            rows,
            served: Vec::new(),
        }
    }

    /// Take one record into account; whether it changed a row. A call's record may come
    /// before the commit it serves (they have different keys, so perhaps different partitions):
    /// a served call is kept and applied again to each later commit.
    pub fn see(&mut self, record: &Record) -> bool {
        let mut changed = self.apply(record);
        match record.outcome {
            Event::Served
                if record
                    .transfer_ids
                    .iter()
                    .any(|id| self.files.contains_key(id)) =>
            {
                self.served.push(record.clone());
            }
            Event::Committed | Event::Removed if changed => {
                for call in std::mem::take(&mut self.served) {
                    changed |= self.apply(&call);
                    self.served.push(call);
                }
            }
            _ => {}
        }
        changed
    }

    fn apply(&mut self, record: &Record) -> bool {
        let mut changed = false;
        let single = record.transfer_id.iter();
        let ids: Vec<&String> = single.chain(record.transfer_ids.iter()).collect();
        let mut files: Vec<&String> = ids.iter().filter_map(|id| self.files.get(*id)).collect();
        // A removal reported without its transfer id is known by its file: `send` waits only
        // for records written after it published, so it can only be this one.
        if ids.is_empty()
            && record.outcome == Event::Removed
            && let Some(file) = &record.file
        {
            files.push(file);
        }
        for file in files {
            let Some(row) = self.rows.get_mut(&(record.resolver.clone(), file.clone())) else {
                continue;
            };
            let why = |what: &str| match (&record.kind, &record.reason) {
                (Some(kind), Some(reason)) => format!("{what} ({kind}): {reason}"),
                (None, Some(reason)) => format!("{what}: {reason}"),
                _ => what.to_owned(),
            };
            let call = record
                .action
                .and_then(|a| serde_json::to_value(a).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let next = match (record.outcome, &*row) {
                (Event::Committed, Progress::Waiting) => match record.action {
                    Some(Action::None) | None => Progress::Done {
                        how: "committed".into(),
                    },
                    Some(action) => Progress::Committed { action },
                },
                // A withdrawal goes as a commit does: done once its call is served.
                (Event::Removed, Progress::Waiting) => match record.action {
                    Some(Action::None) | None => Progress::Done {
                        how: "removed".into(),
                    },
                    Some(action) => Progress::Committed { action },
                },
                (Event::Unchanged, Progress::Waiting) => Progress::Done {
                    how: "unchanged".into(),
                },
                (Event::Rejected, _) => Progress::Failed {
                    why: why("rejected"),
                },
                (Event::Failed, _) => Progress::Failed {
                    why: why("failed in the guest"),
                },
                (Event::Served, Progress::Committed { .. }) => Progress::Done {
                    how: format!("committed, {call} served"),
                },
                // Settles the row: what pauses delivery (a files directory that cannot be
                // written) waits for an operator, and the publisher hears it at once.
                (Event::Paused, Progress::Waiting) => Progress::Failed { why: why("paused") },
                (Event::Refused, _) => Progress::Failed {
                    why: why(&format!("{call} refused")),
                },
                (Event::RolledBack, _) => Progress::Failed {
                    why: why(&format!("{call} refused and rolled back")),
                },
                _ => continue,
            };
            if *row != next {
                *row = next;
                changed = true;
            }
        }
        changed
    }

    /// Whether every row is settled.
    pub fn settled(&self) -> bool {
        self.rows.values().all(Progress::settled)
    }
}

/// The resolvers that have reported on the status topic: each one's latest record.
#[derive(Debug, Default)]
pub struct Roster {
    latest: std::collections::BTreeMap<String, Record>,
}

/// How many names [`Roster::known`] lists before it stops.
const KNOWN_SHOWN: usize = 10;

impl Roster {
    /// The roster of `records` (the status topic's history).
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Roster {
        let mut roster = Roster::default();
        for record in records {
            roster.see(record);
        }
        roster
    }

    /// Take a record into account: its resolver has reported.
    pub fn see(&mut self, record: &Record) {
        match self.latest.get(&record.resolver) {
            Some(known) if known.time > record.time => {}
            _ => {
                self.latest.insert(record.resolver.clone(), record.clone());
            }
        }
    }

    /// Whether `resolver` has ever reported.
    pub fn knows(&self, resolver: &str) -> bool {
        self.latest.contains_key(resolver)
    }

    /// The resolvers whose latest record says they are in `zone`, each with a note when its
    /// daemon said last that it stopped (`r2 (stopped 3h ago)`), sorted.
    pub fn in_zone(&self, zone: &str) -> Vec<(String, Option<String>)> {
        let now = crate::system::unix_now();
        self.latest
            .values()
            .filter(|r| r.zone_id.as_deref() == Some(zone))
            .map(|r| {
                let note = (r.outcome == Event::Stopped).then(|| {
                    format!(
                        "stopped {} ago",
                        humantime::format_duration(std::time::Duration::from_secs(
                            now.saturating_sub(r.time)
                        ))
                    )
                });
                (r.resolver.clone(), note)
            })
            .collect()
    }

    /// `(known: r1, r2, ...)`: the resolvers that have reported, for a message about one
    /// that has not.
    pub fn known(&self) -> String {
        if self.latest.is_empty() {
            return "(no resolver has reported yet)".into();
        }
        let mut names: Vec<&str> = self
            .latest
            .keys()
            .take(KNOWN_SHOWN)
            .map(String::as_str)
            .collect();
        let more = self.latest.len().saturating_sub(KNOWN_SHOWN);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        names.sort_unstable();
        format!("(known: {}{more})", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::record;

    #[test]
    fn a_transfer_is_done_only_once_its_call_is_served() {
        let expected = ["r1".to_owned(), "r2".to_owned()];
        let transfers = [
            ("block.rpz".to_owned(), "t1".to_owned()),
            ("config.yaml".to_owned(), "t2".to_owned()),
        ];
        let mut t = Tracker::new(&expected, &transfers);
        let committed = |who, id: &str, action| {
            record(who, Event::Committed, |r| {
                r.transfer_id = Some(id.into());
                r.action = Some(action);
            })
        };
        assert!(t.see(&committed("r1", "t1", Action::Renew)));
        assert!(
            !t.see(&committed("r3", "t1", Action::Renew)),
            "not expected"
        );
        assert!(t.see(&committed("r1", "t2", Action::Reload)));
        assert!(!t.settled());
        t.see(&record("r1", Event::Served, |r| {
            r.action = Some(Action::Reload);
            r.transfer_ids = vec!["t1".into(), "t2".into()];
        }));
        t.see(&record("r2", Event::Unchanged, |r| {
            r.transfer_id = Some("t1".into())
        }));
        t.see(&record("r2", Event::Rejected, |r| {
            r.transfer_id = Some("t2".into());
            r.kind = Some("invalid-config".into());
            r.reason = Some("netwrok: unknown key".into());
        }));
        assert!(t.settled());
        let mut paused = Tracker::new(&expected[..1], &transfers[..1]);
        paused.see(&record("r1", Event::Paused, |r| {
            r.transfer_id = Some("t1".into());
            r.reason = Some("files dir not writable: Permission denied".into());
        }));
        assert!(paused.settled());
        assert_eq!(
            paused.rows[&("r1".to_owned(), "block.rpz".to_owned())].show(),
            "paused: files dir not writable: Permission denied"
        );
        let row = |r: &str, f: &str| t.rows[&(r.to_owned(), f.to_owned())].show();
        assert_eq!(row("r1", "config.yaml"), "committed, reload served");
        assert_eq!(row("r2", "block.rpz"), "unchanged");
        assert_eq!(
            row("r2", "config.yaml"),
            "rejected (invalid-config): netwrok: unknown key"
        );
    }

    #[test]
    fn a_removal_is_done_once_removed_and_its_call_served() {
        let expected = ["r1".to_owned(), "r2".to_owned()];
        let mut t = Tracker::new(&expected, &[("block.rpz".to_owned(), "t1".to_owned())]);
        t.see(&record("r1", Event::Removed, |r| {
            r.transfer_id = Some("t1".into());
            r.action = Some(Action::Renew);
        }));
        assert!(!t.settled(), "its renew is still to be served");
        t.see(&record("r1", Event::Served, |r| {
            r.action = Some(Action::Renew);
            r.transfer_ids = vec!["t1".into()];
        }));
        // Reported without the removal's transfer id: known by its file.
        t.see(&record("r2", Event::Removed, |r| {
            r.file = Some("block.rpz".into());
        }));
        assert!(t.settled());
        let row = |r: &str| t.rows[&(r.to_owned(), "block.rpz".to_owned())].show();
        assert_eq!(row("r1"), "committed, renew served");
        assert_eq!(row("r2"), "removed");
    }

    #[test]
    fn the_roster_knows_who_reported_and_for_which_zone() {
        let at = |time: u64, zone: Option<&str>, mut r: Record| {
            r.time = time;
            r.zone_id = zone.map(str::to_owned);
            r
        };
        let roster = Roster::of(&[
            at(200, Some("z1"), record("r1", Event::Started, |_| {})),
            // r2 moved from z1 to z2: its latest record counts, whatever the order read.
            at(300, Some("z2"), record("r2", Event::Committed, |_| {})),
            at(100, Some("z1"), record("r2", Event::Started, |_| {})),
            at(200, Some("z1"), record("r3", Event::Stopped, |_| {})),
            at(200, None, record("r4", Event::Started, |_| {})),
        ]);
        assert!(roster.knows("r1") && !roster.knows("resolvr1"));
        let zone: Vec<_> = roster.in_zone("z1");
        assert_eq!(zone[0], ("r1".to_owned(), None));
        assert_eq!(zone[1].0, "r3");
        assert!(
            zone[1]
                .1
                .as_deref()
                .is_some_and(|n| n.starts_with("stopped "))
        );
        assert_eq!(zone.len(), 2);
        assert!(roster.in_zone("z3").is_empty());
        assert_eq!(roster.known(), "(known: r1, r2, r3, r4)");
        assert_eq!(Roster::default().known(), "(no resolver has reported yet)");
    }
}
