//! Typed identifiers, so a task id can never be passed where a job id is meant.
//!
//! Every id prints with a one-letter prefix (`C12`, `T3`, `S4`, `B5`, `J6`) so an
//! operator can paste it into any command and prodops knows what it names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kinds of entity that have a state and a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A request; once approved it is run as a campaign (same row, same id).
    Campaign,
    /// A unit of work inside a campaign.
    Task,
    /// One application run; subtasks of a task form a DAG.
    Subtask,
    /// A slice of a subtask's input submitted at once.
    Batch,
    /// One batch-system job.
    Job,
}

impl EntityKind {
    /// Every kind, in containment order.
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Campaign,
        EntityKind::Task,
        EntityKind::Subtask,
        EntityKind::Batch,
        EntityKind::Job,
    ];

    /// The one-letter prefix used when printing ids of this kind.
    pub fn prefix(self) -> char {
        match self {
            EntityKind::Campaign => 'C',
            EntityKind::Task => 'T',
            EntityKind::Subtask => 'S',
            EntityKind::Batch => 'B',
            EntityKind::Job => 'J',
        }
    }

    /// The lower-case name stored in the history table.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Campaign => "campaign",
            EntityKind::Task => "task",
            EntityKind::Subtask => "subtask",
            EntityKind::Batch => "batch",
            EntityKind::Job => "job",
        }
    }

    /// Reads the name stored in the history table back.
    pub fn parse_name(s: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn from_prefix(c: char) -> Option<EntityKind> {
        EntityKind::ALL
            .into_iter()
            .find(|k| k.prefix() == c.to_ascii_uppercase())
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The kind of entity this id names.
            pub const KIND: EntityKind = $kind;

            /// This id as a reference to any entity.
            pub fn entity(self) -> EntityRef {
                EntityRef { kind: $kind, id: self.0 }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $kind.prefix(), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            /// Accepts `C12` or a bare `12`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let r = EntityRef::parse_with_default(s, $kind)?;
                if r.kind != $kind {
                    return Err(IdParseError::WrongKind { text: s.to_string(), expected: $kind });
                }
                Ok($name(r.id))
            }
        }
    };
}

typed_id!(
    /// A campaign (a request before it is approved).
    CampaignId,
    EntityKind::Campaign
);
typed_id!(
    /// A task of a campaign.
    TaskId,
    EntityKind::Task
);
typed_id!(
    /// A subtask, a node of its task's DAG.
    SubtaskId,
    EntityKind::Subtask
);
typed_id!(
    /// A batch of a subtask.
    BatchId,
    EntityKind::Batch
);
typed_id!(
    /// A job of a batch.
    JobId,
    EntityKind::Job
);

/// An id of any kind, as typed on the command line (`T3`) or read from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// What the id names.
    pub kind: EntityKind,
    /// The number within that kind.
    pub id: i64,
}

/// Why a typed id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// Not a prefix letter followed by a positive number.
    #[error("`{0}` is not an id: write a letter C, T, S, B or J followed by a number, e.g. C12")]
    Malformed(String),
    /// A valid id of the wrong kind.
    #[error("`{text}` is not a {} id: it should start with {}", .expected.as_str(), .expected.prefix())]
    WrongKind {
        /// What was typed.
        text: String,
        /// The kind that was wanted.
        expected: EntityKind,
    },
}

impl EntityRef {
    /// Parses `C12`, `t3`…; a bare number is taken as `default`.
    pub fn parse_with_default(s: &str, default: EntityKind) -> Result<EntityRef, IdParseError> {
        let s = s.trim();
        let malformed = || IdParseError::Malformed(s.to_string());
        let (kind, digits) = match s.chars().next() {
            Some(c) if c.is_ascii_alphabetic() => {
                (EntityKind::from_prefix(c).ok_or_else(malformed)?, &s[1..])
            }
            Some(_) => (default, s),
            None => return Err(malformed()),
        };
        let id: i64 = digits.parse().map_err(|_| malformed())?;
        if id <= 0 {
            return Err(malformed());
        }
        Ok(EntityRef { kind, id })
    }
}

impl FromStr for EntityRef {
    type Err = IdParseError;
    /// A bare number names a campaign, the most common thing to look up.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityRef::parse_with_default(s, EntityKind::Campaign)
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_with_prefix_and_parse_back() {
        assert_eq!(TaskId(3).to_string(), "T3");
        assert_eq!("T3".parse::<TaskId>(), Ok(TaskId(3)));
        assert_eq!("j7".parse::<EntityRef>().unwrap().kind, EntityKind::Job);
        assert_eq!("12".parse::<CampaignId>(), Ok(CampaignId(12)));
    }

    #[test]
    fn wrong_or_malformed_ids_are_refused() {
        assert!(matches!(
            "T3".parse::<JobId>(),
            Err(IdParseError::WrongKind { .. })
        ));
        assert!("X3".parse::<EntityRef>().is_err());
        assert!("C".parse::<EntityRef>().is_err());
        assert!("C-1".parse::<EntityRef>().is_err());
        assert!("".parse::<EntityRef>().is_err());
    }
}
