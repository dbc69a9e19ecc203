//! Keymaps: which keys run which [`Action`]. The shipped ones
//! (`keymaps/*.toml`) are built in; a user's file of the same name in the
//! platform config dir (`<config>/keymaps/<name>.toml`) rebinds the actions
//! it lists and keeps the rest. A bad file is reported with its path, line
//! and key, and the shipped map is used instead.

use super::action::Action;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The keymaps that ship with prodops, by name.
pub const SHIPPED: &[(&str, &str)] = &[
    ("default", include_str!("../../keymaps/default.toml")),
    ("vim", include_str!("../../keymaps/vim.toml")),
];

/// One key with its modifiers, as written in keymap files (`q`, `ctrl-r`,
/// `enter`, `shift-tab`, `f5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    code: KeyCodeOrd,
    ctrl: bool,
    alt: bool,
    /// Shift on a named key (`shift-up`); a shifted character is its own code.
    shift: bool,
}

/// `KeyCode` subset that keymaps can name, ordered for stable help output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyCodeOrd {
    Char(char),
    F(u8),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
}

/// Named keys and how they are written.
const NAMED: &[(&str, KeyCodeOrd)] = &[
    ("enter", KeyCodeOrd::Enter),
    ("esc", KeyCodeOrd::Esc),
    ("tab", KeyCodeOrd::Tab),
    ("backtab", KeyCodeOrd::BackTab),
    ("backspace", KeyCodeOrd::Backspace),
    ("delete", KeyCodeOrd::Delete),
    ("up", KeyCodeOrd::Up),
    ("down", KeyCodeOrd::Down),
    ("left", KeyCodeOrd::Left),
    ("right", KeyCodeOrd::Right),
    ("pageup", KeyCodeOrd::PageUp),
    ("pagedown", KeyCodeOrd::PageDown),
    ("home", KeyCodeOrd::Home),
    ("end", KeyCodeOrd::End),
    ("space", KeyCodeOrd::Char(' ')),
];

impl Key {
    /// Parses `ctrl-r`, `alt-x`, `shift-tab`, `G`, `enter`, `f5`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Key, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut shift = false;
        let mut rest = text;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.chars().count() > 1 && lower.starts_with("ctrl-") {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.chars().count() > 1 && lower.starts_with("alt-") {
                alt = true;
                rest = &rest[4..];
            } else if rest.chars().count() > 1 && lower.starts_with("shift-") {
                shift = true;
                rest = &rest[6..];
            } else {
                break;
            }
        }
        let code = Self::parse_code(rest, shift).ok_or_else(|| {
            format!("`{text}` is not a key; write a character (`q`, `G`, `?`), a name (enter, esc, tab, space, up, pageup, home, f1…f12) with optional `ctrl-`, `alt-`, `shift-`")
        })?;
        Ok(Key {
            code,
            ctrl,
            alt,
            shift: shift && Self::takes_shift(code),
        })
    }

    /// True for keys whose shifted form is told apart by a flag, not by
    /// another code (characters turn upper case, tab turns backtab).
    fn takes_shift(code: KeyCodeOrd) -> bool {
        !matches!(
            code,
            KeyCodeOrd::Char(_) | KeyCodeOrd::Tab | KeyCodeOrd::BackTab
        )
    }

    fn parse_code(text: &str, shift: bool) -> Option<KeyCodeOrd> {
        let mut chars = text.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            return Some(KeyCodeOrd::Char(if shift {
                c.to_ascii_uppercase()
            } else {
                c
            }));
        }
        let lower = text.to_ascii_lowercase();
        if shift && lower == "tab" {
            return Some(KeyCodeOrd::BackTab);
        }
        if let Some(n) = lower.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()) {
            return (1..=12).contains(&n).then_some(KeyCodeOrd::F(n));
        }
        NAMED
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, c)| *c)
    }

    /// The key crossterm reports, if keymaps can name it.
    pub fn from_event(event: &KeyEvent) -> Option<Key> {
        let code = match event.code {
            KeyCode::Char(c) => KeyCodeOrd::Char(c),
            KeyCode::F(n) => KeyCodeOrd::F(n),
            KeyCode::Enter => KeyCodeOrd::Enter,
            KeyCode::Esc => KeyCodeOrd::Esc,
            KeyCode::Tab => KeyCodeOrd::Tab,
            KeyCode::BackTab => KeyCodeOrd::BackTab,
            KeyCode::Backspace => KeyCodeOrd::Backspace,
            KeyCode::Delete => KeyCodeOrd::Delete,
            KeyCode::Up => KeyCodeOrd::Up,
            KeyCode::Down => KeyCodeOrd::Down,
            KeyCode::Left => KeyCodeOrd::Left,
            KeyCode::Right => KeyCodeOrd::Right,
            KeyCode::PageUp => KeyCodeOrd::PageUp,
            KeyCode::PageDown => KeyCodeOrd::PageDown,
            KeyCode::Home => KeyCodeOrd::Home,
            KeyCode::End => KeyCodeOrd::End,
            _ => return None,
        };
        Some(Key {
            code,
            ctrl: event.modifiers.contains(KeyModifiers::CONTROL),
            alt: event.modifiers.contains(KeyModifiers::ALT),
            shift: event.modifiers.contains(KeyModifiers::SHIFT) && Self::takes_shift(code),
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        if self.shift {
            f.write_str("shift-")?;
        }
        match self.code {
            KeyCodeOrd::Char(' ') => f.write_str("space"),
            KeyCodeOrd::Char(c) => write!(f, "{c}"),
            KeyCodeOrd::F(n) => write!(f, "f{n}"),
            code => {
                let name = NAMED
                    .iter()
                    .find(|(_, c)| *c == code)
                    .map(|(n, _)| *n)
                    .unwrap_or("?");
                f.write_str(name)
            }
        }
    }
}

/// A problem in a keymap or theme file: where, which key, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The key (setting name) at fault.
    pub key: String,
    /// What is wrong and the fix.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.file.display(),
            self.line,
            self.key,
            self.message
        )
    }
}

/// The 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Reads TOML text into `T`, turning a syntax error into a [`FileError`].
pub fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| FileError {
        file: file.to_path_buf(),
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
        key: e
            .span()
            .map(|s| text[s].lines().next().unwrap_or("").trim().to_string())
            .unwrap_or_default(),
        message: e.message().to_string(),
    })
}

/// The keys of every action, and the action of every key.
#[derive(Debug, Clone, Default)]
pub struct Keymap {
    /// The keymap's name (`default`, `vim`, or a user's).
    pub name: String,
    bindings: BTreeMap<Action, Vec<Key>>,
    by_key: BTreeMap<Key, Action>,
}

type KeymapFile = BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>;

impl Keymap {
    /// The keymap `name`: shipped, overridden by `user_dir/keymaps/<name>.toml`
    /// when that exists (or only the user's when prodops ships none by that
    /// name). A bad user file leaves the shipped map and returns its error.
    pub fn load(name: &str, user_dir: Option<&Path>) -> (Keymap, Vec<FileError>) {
        let shipped = SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let mut errors = Vec::new();
        let base = match shipped {
            Some(text) => Keymap::from_text(
                name,
                &PathBuf::from(format!("keymaps/{name}.toml")),
                text,
                None,
            )
            .expect("shipped keymaps are valid (tested)"),
            None => Keymap::default_map(),
        };
        let user = user_dir.map(|d| d.join("keymaps").join(format!("{name}.toml")));
        match user.filter(|p| p.is_file()) {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => match Keymap::from_text(name, &path, &text, Some(&base)) {
                    Ok(map) => return (map, errors),
                    Err(e) => errors.push(e),
                },
                Err(e) => errors.push(FileError {
                    file: path,
                    line: 1,
                    key: String::new(),
                    message: format!("cannot read: {e}"),
                }),
            },
            None if shipped.is_none() => errors.push(FileError {
                file: PathBuf::from(format!("keymaps/{name}.toml")),
                line: 1,
                key: name.to_string(),
                message: format!(
                    "no keymap by that name; shipped: {}",
                    SHIPPED
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            None => {}
        }
        (base, errors)
    }

    /// The built-in default map.
    pub fn default_map() -> Keymap {
        Keymap::from_text(
            "default",
            Path::new("keymaps/default.toml"),
            SHIPPED[0].1,
            None,
        )
        .expect("the default keymap is valid (tested)")
    }

    /// Parses a keymap file; with `base`, the file rebinds only the actions it names.
    pub fn from_text(
        name: &str,
        file: &Path,
        text: &str,
        base: Option<&Keymap>,
    ) -> Result<Keymap, FileError> {
        let parsed: KeymapFile = parse_toml(file, text)?;
        let error = |span: std::ops::Range<usize>, key: &str, message: String| FileError {
            file: file.to_path_buf(),
            line: line_of(text, span.start),
            key: key.to_string(),
            message,
        };
        let mut bindings = base.map(|b| b.bindings.clone()).unwrap_or_default();
        for (action_name, keys) in &parsed {
            let action = Action::from_name(action_name.get_ref()).ok_or_else(|| {
                error(
                    action_name.span(),
                    action_name.get_ref(),
                    format!(
                        "no such action; actions are: {}",
                        Action::ALL
                            .iter()
                            .map(|a| a.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let mut parsed_keys = Vec::new();
            for key in keys.get_ref() {
                let k = Key::parse(key.get_ref())
                    .map_err(|m| error(key.span(), action_name.get_ref(), m))?;
                parsed_keys.push(k);
            }
            bindings.insert(action, parsed_keys);
        }
        let mut by_key = BTreeMap::new();
        for (action, keys) in &bindings {
            for key in keys {
                if let Some(other) = by_key.insert(*key, *action) {
                    let (span, at) = parsed
                        .iter()
                        .find(|(n, _)| n.get_ref() == action.name() || n.get_ref() == other.name())
                        .map(|(n, _)| (n.span(), n.get_ref().clone()))
                        .unwrap_or((0..0, action.name().to_string()));
                    return Err(error(
                        span,
                        &at,
                        format!(
                            "key `{key}` is bound to both `{}` and `{}`; give one of them another key",
                            other.name(),
                            action.name()
                        ),
                    ));
                }
            }
        }
        Ok(Keymap {
            name: name.to_string(),
            bindings,
            by_key,
        })
    }

    /// The action bound to a key press, if any.
    pub fn action_for(&self, event: &KeyEvent) -> Option<Action> {
        let key = Key::from_event(event)?;
        self.by_key.get(&key).copied().or_else(|| {
            // An unbound shift-arrow acts as the arrow.
            let plain = Key {
                shift: false,
                ..key
            };
            self.by_key.get(&plain).copied()
        })
    }

    /// The keys of `action`, as written in keymap files.
    pub fn keys_of(&self, action: Action) -> &[Key] {
        self.bindings.get(&action).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The first key of `action`, for hints (`None` when unbound).
    pub fn hint(&self, action: Action) -> Option<String> {
        self.keys_of(action).first().map(Key::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print_back() {
        for text in [
            "q", "G", "?", "ctrl-r", "alt-x", "enter", "esc", "space", "pageup", "f5", "backtab",
            "shift-up",
        ] {
            assert_eq!(Key::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Key::parse("shift-tab").unwrap().to_string(), "backtab");
        assert!(Key::parse("hyper-q").unwrap_err().contains("not a key"));
        assert!(Key::parse("f13").is_err());
    }

    #[test]
    fn a_user_file_rebinds_only_what_it_names() {
        let base = Keymap::default_map();
        let user = Keymap::from_text(
            "default",
            Path::new("u.toml"),
            "quit = [\"Q\"]\n",
            Some(&base),
        )
        .unwrap();
        assert_eq!(user.hint(Action::Quit).as_deref(), Some("Q"));
        assert_eq!(user.hint(Action::Help), base.hint(Action::Help));
    }

    #[test]
    fn a_bad_file_names_file_line_and_key() {
        let text = "quit = [\"q\"]\n\napprovee = [\"a\"]\n";
        let e = Keymap::from_text("x", Path::new("my.toml"), text, None).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "approvee"));
        assert!(
            e.to_string()
                .starts_with("my.toml:3: `approvee`: no such action"),
            "{e}"
        );
        let text = "quit = [\"q\"]\nhelp = [\"hyper-h\"]\n";
        let e = Keymap::from_text("x", Path::new("my.toml"), text, None).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "help"));
        let text = "quit = [\"q\"]\nhelp = [\"q\"]\n";
        let e = Keymap::from_text("x", Path::new("my.toml"), text, None).unwrap_err();
        assert!(e.message.contains("bound to both"), "{e}");
        let e = Keymap::from_text("x", Path::new("my.toml"), "quit = [\"q\"\n", None).unwrap_err();
        assert_eq!(e.file, PathBuf::from("my.toml"));
    }
}
