//! Themes: the colours of the console. The shipped ones (`themes/*.toml`)
//! are built in; `<config>/themes/<name>.toml` overrides the slots it names.
//! With `NO_COLOR` set (or the `mono` theme) only bold, underline and
//! reverse video are used, so nothing depends on colour.

use super::keymap::{line_of, parse_toml, FileError};
use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The themes that ship with prodops, by name.
pub const SHIPPED: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// What a theme colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    /// Ordinary text.
    Text,
    /// Secondary text (times, ids, counts of zero).
    Dim,
    /// Pane titles.
    Title,
    /// Pane borders.
    Border,
    /// The focused pane's border.
    BorderFocused,
    /// The selected row.
    Selected,
    /// The header bar.
    Header,
    /// Keys in the hints bar and help.
    Key,
    /// A success message.
    FlashOk,
    /// An error message.
    FlashError,
    /// Dangerous actions and their confirmations.
    Danger,
    /// Succeeded, completed.
    StateOk,
    /// Failed.
    StateFailed,
    /// Running, submitted.
    StateRunning,
    /// Waiting, ready, queued, pending approval, created.
    StateWaiting,
    /// Held.
    StateHeld,
    /// Cancelled, rejected, removed, consolidated.
    StateEnded,
}

impl Slot {
    /// Every slot, with its name in theme files.
    pub const ALL: &'static [(Slot, &'static str)] = &[
        (Slot::Text, "text"),
        (Slot::Dim, "dim"),
        (Slot::Title, "title"),
        (Slot::Border, "border"),
        (Slot::BorderFocused, "border_focused"),
        (Slot::Selected, "selected"),
        (Slot::Header, "header"),
        (Slot::Key, "key"),
        (Slot::FlashOk, "flash_ok"),
        (Slot::FlashError, "flash_error"),
        (Slot::Danger, "danger"),
        (Slot::StateOk, "state_ok"),
        (Slot::StateFailed, "state_failed"),
        (Slot::StateRunning, "state_running"),
        (Slot::StateWaiting, "state_waiting"),
        (Slot::StateHeld, "state_held"),
        (Slot::StateEnded, "state_ended"),
    ];

    fn from_name(name: &str) -> Option<Slot> {
        Slot::ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }
}

/// One slot as written in a theme file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reverse: bool,
}

/// The styles of every slot.
#[derive(Debug, Clone)]
pub struct Theme {
    /// The theme's name.
    pub name: String,
    styles: BTreeMap<Slot, Style>,
}

impl Theme {
    /// The theme `name` (shipped, overridden by `user_dir/themes/<name>.toml`),
    /// stripped of colour when `no_color`. A bad user file leaves the shipped
    /// theme and returns its error.
    pub fn load(name: &str, user_dir: Option<&Path>, no_color: bool) -> (Theme, Vec<FileError>) {
        let mut errors = Vec::new();
        let shipped = SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let base = match shipped {
            Some(text) => {
                Theme::from_text(name, Path::new(&format!("themes/{name}.toml")), text, None)
                    .expect("shipped themes are valid (tested)")
            }
            None => Theme::default_theme(),
        };
        let user = user_dir.map(|d| d.join("themes").join(format!("{name}.toml")));
        let theme = match user.filter(|p| p.is_file()) {
            Some(path) => match std::fs::read_to_string(&path)
                .map_err(|e| FileError {
                    file: path.clone(),
                    line: 1,
                    key: String::new(),
                    message: format!("cannot read: {e}"),
                })
                .and_then(|text| Theme::from_text(name, &path, &text, Some(&base)))
            {
                Ok(theme) => theme,
                Err(e) => {
                    errors.push(e);
                    base
                }
            },
            None => {
                if shipped.is_none() {
                    errors.push(FileError {
                        file: PathBuf::from(format!("themes/{name}.toml")),
                        line: 1,
                        key: name.to_string(),
                        message: format!(
                            "no theme by that name; shipped: {}",
                            SHIPPED
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                base
            }
        };
        (
            if no_color {
                theme.without_colour()
            } else {
                theme
            },
            errors,
        )
    }

    /// The built-in dark theme.
    pub fn default_theme() -> Theme {
        Theme::from_text("dark", Path::new("themes/dark.toml"), SHIPPED[0].1, None)
            .expect("the dark theme is valid (tested)")
    }

    /// Parses a theme file; with `base`, the file overrides only the slots it names.
    pub fn from_text(
        name: &str,
        file: &Path,
        text: &str,
        base: Option<&Theme>,
    ) -> Result<Theme, FileError> {
        let parsed: BTreeMap<Spanned<String>, Spanned<StyleSpec>> = parse_toml(file, text)?;
        let mut styles = base.map(|b| b.styles.clone()).unwrap_or_default();
        for (slot_name, spec) in &parsed {
            let error = |message: String| FileError {
                file: file.to_path_buf(),
                line: line_of(text, slot_name.span().start),
                key: slot_name.get_ref().clone(),
                message,
            };
            let slot = Slot::from_name(slot_name.get_ref()).ok_or_else(|| {
                error(format!(
                    "no such slot; slots are: {}",
                    Slot::ALL
                        .iter()
                        .map(|(_, n)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            styles.insert(slot, style_of(spec.get_ref()).map_err(error)?);
        }
        if let Some((_, missing)) = Slot::ALL.iter().find(|(s, _)| !styles.contains_key(s)) {
            return Err(FileError {
                file: file.to_path_buf(),
                line: 1,
                key: missing.to_string(),
                message: "missing: every slot needs a style in a theme of its own".into(),
            });
        }
        Ok(Theme {
            name: name.to_string(),
            styles,
        })
    }

    /// The same theme with colours removed (`NO_COLOR`): selection and
    /// emphasis by reverse video, bold and underline only.
    pub fn without_colour(mut self) -> Theme {
        for (slot, style) in self.styles.iter_mut() {
            let mut plain = Style::default().add_modifier(style.add_modifier);
            if matches!(slot, Slot::Selected) {
                plain = plain.add_modifier(Modifier::REVERSED);
            }
            if matches!(slot, Slot::StateFailed | Slot::Danger | Slot::FlashError) {
                plain = plain.add_modifier(Modifier::BOLD);
            }
            *style = plain;
        }
        self
    }

    /// The style of a slot.
    pub fn style(&self, slot: Slot) -> Style {
        self.styles.get(&slot).copied().unwrap_or_default()
    }

    /// The style of an entity state, by its stored name.
    pub fn state(&self, state: &str) -> Style {
        self.style(state_slot(state))
    }
}

/// Which slot colours a state.
pub fn state_slot(state: &str) -> Slot {
    match state {
        "succeeded" | "completed" | "approved" => Slot::StateOk,
        "failed" => Slot::StateFailed,
        "running" | "submitted" | "submitting" | "project_running" | "jobs_completed" => {
            Slot::StateRunning
        }
        "held" => Slot::StateHeld,
        "cancelled" | "rejected" | "removed" | "consolidated" => Slot::StateEnded,
        _ => Slot::StateWaiting,
    }
}

fn style_of(spec: &StyleSpec) -> Result<Style, String> {
    let colour = |text: &Option<String>| -> Result<Option<Color>, String> {
        text.as_deref()
            .map(|t| {
                t.parse::<Color>().map_err(|_| {
                    format!("`{t}` is not a colour; use a name (red, lightblue, darkgray), #rrggbb or 0–255")
                })
            })
            .transpose()
    };
    let mut style = Style::default();
    if let Some(fg) = colour(&spec.fg)? {
        style = style.fg(fg);
    }
    if let Some(bg) = colour(&spec.bg)? {
        style = style.bg(bg);
    }
    for (on, modifier) in [
        (spec.bold, Modifier::BOLD),
        (spec.underline, Modifier::UNDERLINED),
        (spec.reverse, Modifier::REVERSED),
    ] {
        if on {
            style = style.add_modifier(modifier);
        }
    }
    Ok(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_themes_are_complete_and_valid() {
        for (name, text) in SHIPPED {
            Theme::from_text(name, Path::new(name), text, None).unwrap();
        }
    }

    #[test]
    fn no_color_keeps_no_colour_and_marks_selection_by_reverse_video() {
        let (theme, errors) = Theme::load("dark", None, true);
        assert!(errors.is_empty());
        for (slot, _) in Slot::ALL {
            let s = theme.style(*slot);
            assert_eq!((s.fg, s.bg), (None, None), "{slot:?}");
        }
        assert!(theme
            .style(Slot::Selected)
            .add_modifier
            .contains(Modifier::REVERSED));
    }

    #[test]
    fn a_bad_theme_file_names_file_line_and_slot() {
        let base = Theme::default_theme();
        let text = "text = { fg = \"white\" }\nborder = { fg = \"blurple\" }\n";
        let e = Theme::from_text("x", Path::new("t.toml"), text, Some(&base)).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "border"));
        assert!(e.message.contains("not a colour"), "{e}");
        let e = Theme::from_text("x", Path::new("t.toml"), "txet = {}\n", Some(&base)).unwrap_err();
        assert!(e.message.contains("no such slot"), "{e}");
        let (theme, errors) = Theme::load("nope", None, false);
        assert_eq!(theme.name, "dark");
        assert!(errors[0].message.contains("no theme by that name"));
    }
}
