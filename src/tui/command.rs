//! The `:` command line: `:campaign 12`, `:jobs failed running`,
//! `:theme light`, `:keymap vim`, or any action by name (`:approve`, `:help`).

use super::action::Action;
use crate::model::ids::CampaignId;
use crate::model::state::{JobState, Lifecycle};

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run an action.
    Action(Action),
    /// Select a campaign.
    Campaign(CampaignId),
    /// Show jobs in these states (all when empty).
    Jobs(Vec<String>),
    /// Switch theme or keymap.
    Load {
        /// `theme` or `keymap`.
        what: &'static str,
        /// Name.
        name: String,
    },
}

/// Words a command line may start with, besides action names.
const VERBS: &[&str] = &["campaign", "jobs", "theme", "keymap"];

/// Parses a command line; the error says what is accepted.
pub fn parse(line: &str) -> Result<Parsed, String> {
    let mut words = line.split_whitespace();
    let Some(verb) = words.next() else {
        return Err(
            "type a command: campaign N, jobs [STATE…], theme NAME, keymap NAME, or an action"
                .into(),
        );
    };
    let rest: Vec<&str> = words.collect();
    match verb {
        "campaign" | "c" => {
            let id = rest
                .first()
                .ok_or("campaign: which one? e.g. `:campaign 12`")?;
            id.parse::<CampaignId>()
                .map(Parsed::Campaign)
                .map_err(|e| format!("campaign: {e}"))
        }
        "jobs" | "j" => {
            for s in &rest {
                if JobState::parse(s).is_none() {
                    return Err(format!(
                        "jobs: unknown state `{s}`; states are {}",
                        states().join(", ")
                    ));
                }
            }
            Ok(Parsed::Jobs(rest.iter().map(|s| s.to_string()).collect()))
        }
        "theme" | "keymap" => {
            let name = rest.first().ok_or(format!(
                "{verb}: which one? e.g. `:{verb} {}`",
                names(verb)[0]
            ))?;
            Ok(Parsed::Load {
                what: if verb == "theme" { "theme" } else { "keymap" },
                name: name.to_string(),
            })
        }
        "q" | "quit" => Ok(Parsed::Action(Action::Quit)),
        other => Action::from_name(other).map(Parsed::Action).ok_or_else(|| {
            format!("`{other}`: no such command; Tab completes, `:help` lists the keys")
        }),
    }
}

fn states() -> Vec<&'static str> {
    JobState::ALL.iter().map(|s| s.as_str()).collect()
}

fn names(what: &str) -> Vec<&'static str> {
    let shipped: &[(&str, &str)] = if what == "theme" {
        super::theme::SHIPPED
    } else {
        super::keymap::SHIPPED
    };
    shipped.iter().map(|(n, _)| *n).collect()
}

/// Completions of a partly typed command line, best first (every verb and
/// action for an empty line).
pub fn complete(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let new_word = line.is_empty() || line.ends_with(char::is_whitespace);
    let (verb, prefix) = match (words.as_slice(), new_word) {
        ([], _) => return first_words(""),
        ([only], false) => return first_words(only),
        ([verb, ..], true) => (*verb, ""),
        ([verb, .., last], false) => (*verb, *last),
    };
    let head = &line[..line.len() - prefix.len()];
    let options: Vec<&str> = match verb {
        "jobs" | "j" => states(),
        "theme" | "keymap" => names(verb),
        _ => Vec::new(),
    };
    options
        .into_iter()
        .filter(|o| o.starts_with(prefix))
        .map(|o| format!("{head}{o}"))
        .collect()
}

/// Verbs and action names starting with `prefix`.
fn first_words(prefix: &str) -> Vec<String> {
    VERBS
        .iter()
        .copied()
        .chain(Action::ALL.iter().map(|a| a.name()))
        .filter(|w| w.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_clear_errors() {
        assert_eq!(parse("campaign 12"), Ok(Parsed::Campaign(CampaignId(12))));
        assert_eq!(
            parse("jobs failed running"),
            Ok(Parsed::Jobs(vec!["failed".into(), "running".into()]))
        );
        assert_eq!(
            parse("theme light"),
            Ok(Parsed::Load {
                what: "theme",
                name: "light".into()
            })
        );
        assert_eq!(parse("approve"), Ok(Parsed::Action(Action::Approve)));
        assert!(parse("jobs flying")
            .unwrap_err()
            .contains("unknown state `flying`"));
        assert!(parse("frobnicate").unwrap_err().contains("no such command"));
    }

    #[test]
    fn completing_an_empty_or_blank_line_offers_every_verb_instead_of_panicking() {
        for line in ["", " ", "   "] {
            let all = complete(line);
            assert!(all.contains(&"campaign".to_string()), "{line:?}");
            assert!(all.contains(&"approve".to_string()), "{line:?}");
        }
        let states: Vec<String> = states().iter().map(|s| format!("jobs {s}")).collect();
        assert_eq!(complete("jobs "), states);
        assert!(complete("zzz ").is_empty());
    }

    #[test]
    fn completion_offers_verbs_states_and_names() {
        assert!(complete("cam").contains(&"campaign".to_string()));
        assert!(complete("appr").contains(&"approve".to_string()));
        assert_eq!(complete("jobs fa"), vec!["jobs failed".to_string()]);
        assert_eq!(
            complete("theme hi"),
            vec!["theme high-contrast".to_string()]
        );
    }
}
