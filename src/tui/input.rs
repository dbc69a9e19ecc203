//! The one-line input at the bottom: `:` commands (Tab cycles through
//! completions, Up/Down walk the history) and `/` filters (applied as typed;
//! they open with the current filter selected, so typing replaces it).

use super::command::complete;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the input line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A `:` command.
    Command,
    /// A `/` filter (or log search) of the focused pane.
    Filter,
}

/// The input line's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputLine {
    /// `:` or `/`.
    pub kind: InputKind,
    /// The text typed.
    pub text: String,
    /// The whole text is selected: the next character replaces it.
    pub selected: bool,
    /// Completions being cycled with Tab, and which one is shown.
    cycling: Option<(Vec<String>, usize)>,
    /// Position in the command history while walking it with Up/Down.
    recalled: Option<usize>,
}

/// What a key did to the input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Still editing; the text may have changed.
    Editing,
    /// Enter: use the text.
    Done(String),
    /// Esc: drop it.
    Cancelled,
}

impl InputLine {
    /// An empty `:` line.
    pub fn command() -> InputLine {
        InputLine::with(InputKind::Command, String::new())
    }

    /// A `/` line holding the current filter, selected for replacing.
    pub fn filter(current: &str) -> InputLine {
        InputLine {
            selected: !current.is_empty(),
            ..InputLine::with(InputKind::Filter, current.to_string())
        }
    }

    fn with(kind: InputKind, text: String) -> InputLine {
        InputLine {
            kind,
            text,
            selected: false,
            cycling: None,
            recalled: None,
        }
    }

    /// Applies one key; `history` holds earlier commands, newest last.
    pub fn key(&mut self, key: KeyEvent, history: &[String]) -> Edit {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let cycling = self.cycling.take();
        match key.code {
            KeyCode::Esc => return Edit::Cancelled,
            KeyCode::Enter => return Edit::Done(self.text.clone()),
            KeyCode::Tab | KeyCode::BackTab if self.kind == InputKind::Command => {
                self.cycle(cycling, key.code == KeyCode::BackTab)
            }
            KeyCode::Up if self.kind == InputKind::Command => self.recall(history, true),
            KeyCode::Down if self.kind == InputKind::Command => self.recall(history, false),
            KeyCode::Backspace if self.selected => self.replace(""),
            KeyCode::Backspace => {
                self.text.pop();
            }
            KeyCode::Char('u') if ctrl => self.replace(""),
            KeyCode::Char('w') if ctrl => self.delete_word(),
            KeyCode::Char(c) if !ctrl => {
                if self.selected {
                    self.replace("");
                }
                self.text.push(c);
            }
            KeyCode::Left | KeyCode::Right | KeyCode::Home | KeyCode::End => self.selected = false,
            _ => {}
        }
        Edit::Editing
    }

    fn replace(&mut self, text: &str) {
        self.text = text.to_string();
        self.selected = false;
    }

    fn delete_word(&mut self) {
        let kept = self.text.trim_end().len();
        let cut = self.text[..kept]
            .rfind(char::is_whitespace)
            .map_or(0, |i| i + 1);
        self.text.truncate(cut);
        self.selected = false;
    }

    /// Tab: the first completion, then the next one each time (BackTab: the previous).
    fn cycle(&mut self, cycling: Option<(Vec<String>, usize)>, back: bool) {
        let (options, at) = match cycling {
            Some((options, at)) if !options.is_empty() => {
                let n = options.len();
                let next = if back { (at + n - 1) % n } else { (at + 1) % n };
                (options, next)
            }
            _ => {
                let options = complete(&self.text);
                let start = if back {
                    options.len().saturating_sub(1)
                } else {
                    0
                };
                (options, start)
            }
        };
        if let Some(choice) = options.get(at) {
            self.text = choice.clone();
            self.selected = false;
            self.cycling = Some((options, at));
        }
    }

    /// Up (older) or Down (newer) through the command history.
    fn recall(&mut self, history: &[String], older: bool) {
        if history.is_empty() {
            return;
        }
        let at = match (self.recalled, older) {
            (None, true) => Some(history.len() - 1),
            (None, false) => None,
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < history.len() => Some(i + 1),
            (Some(_), false) => None,
        };
        self.recalled = at;
        self.text = at.map(|i| history[i].clone()).unwrap_or_default();
        self.selected = false;
    }

    /// The completions the footer shows while typing a command.
    pub fn suggestions(&self) -> Vec<String> {
        match &self.cycling {
            Some((options, _)) => options.clone(),
            None => complete(&self.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(line: &mut InputLine, codes: &[KeyCode], history: &[String]) -> Edit {
        let mut last = Edit::Editing;
        for code in codes {
            last = line.key(KeyEvent::from(*code), history);
        }
        last
    }

    #[test]
    fn tab_cycles_through_every_candidate_and_backtab_goes_back() {
        let mut line = InputLine::command();
        press(&mut line, &[KeyCode::Char('t'), KeyCode::Char('h')], &[]);
        press(&mut line, &[KeyCode::Char('e'), KeyCode::Char('m')], &[]);
        press(&mut line, &[KeyCode::Char('e'), KeyCode::Char(' ')], &[]);
        let options = complete("theme ");
        assert!(options.len() >= 3);
        press(&mut line, &[KeyCode::Tab], &[]);
        assert_eq!(line.text, options[0]);
        press(&mut line, &[KeyCode::Tab], &[]);
        assert_eq!(line.text, options[1]);
        press(&mut line, &[KeyCode::BackTab], &[]);
        assert_eq!(line.text, options[0]);
        for _ in 0..options.len() {
            press(&mut line, &[KeyCode::Tab], &[]);
        }
        assert_eq!(line.text, options[0], "cycling wraps around");
    }

    #[test]
    fn up_and_down_walk_the_command_history() {
        let history = vec!["jobs failed".to_string(), "campaign 2".to_string()];
        let mut line = InputLine::command();
        press(&mut line, &[KeyCode::Up], &history);
        assert_eq!(line.text, "campaign 2");
        press(&mut line, &[KeyCode::Up], &history);
        assert_eq!(line.text, "jobs failed");
        press(&mut line, &[KeyCode::Up], &history);
        assert_eq!(line.text, "jobs failed", "stops at the oldest");
        press(&mut line, &[KeyCode::Down], &history);
        assert_eq!(line.text, "campaign 2");
        press(&mut line, &[KeyCode::Down], &history);
        assert_eq!(line.text, "", "past the newest: an empty line");
    }

    #[test]
    fn a_reopened_filter_is_replaced_by_typing_not_appended_to() {
        let mut line = InputLine::filter("running");
        assert!(line.selected);
        press(&mut line, &[KeyCode::Char('f'), KeyCode::Char('a')], &[]);
        assert_eq!(line.text, "fa");
        let mut line = InputLine::filter("running");
        press(&mut line, &[KeyCode::End, KeyCode::Backspace], &[]);
        assert_eq!(line.text, "runnin", "moving first keeps the text to edit");
        let mut line = InputLine::filter("running");
        press(&mut line, &[KeyCode::Backspace], &[]);
        assert_eq!(line.text, "");
        assert_eq!(
            press(&mut line, &[KeyCode::Enter], &[]),
            Edit::Done(String::new())
        );
    }

    #[test]
    fn ctrl_w_deletes_a_word_and_ctrl_u_the_line() {
        let mut line = InputLine::command();
        for c in "jobs failed run".chars() {
            line.key(KeyEvent::from(KeyCode::Char(c)), &[]);
        }
        line.key(
            KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL),
            &[],
        );
        assert_eq!(line.text, "jobs failed ");
        line.key(
            KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
            &[],
        );
        assert_eq!(line.text, "");
    }
}
