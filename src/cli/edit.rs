//! `prodops request edit ID` without a file: the request as TOML in the
//! user's editor (like `kubectl edit`), validated on save, reopened with the
//! error on top while it is invalid.

use crate::model::ids::CampaignId;
use crate::model::request::ValidRequest;
use crate::ops::views::{request_toml, RequestDetail};
use crate::ops::{Ops, OpsError};
use anyhow::{anyhow, bail, Context};
use std::path::Path;

/// What an editing session ended with.
pub(super) enum Edited {
    /// The change was saved.
    Saved(Box<RequestDetail>),
    /// The file was left as it was: nothing was written.
    Unchanged,
}

/// Opens the request in the editor until it is saved valid, left unchanged,
/// or the editor fails.
pub(super) async fn edit_in_editor(ops: &Ops, id: CampaignId) -> anyhow::Result<Edited> {
    ops.check_editable(id).await?;
    let stored = ops.request(id).await?;
    let editor = editor_command()?;
    let file = tempfile::Builder::new()
        .prefix(&format!("prodops-{id}-"))
        .suffix(".toml")
        .tempfile()
        .context("cannot make a temporary file for the editor")?;
    let mut presented = request_toml(&stored)?;
    let mut error: Option<String> = None;
    loop {
        let text = with_error_on_top(error.as_deref(), &presented);
        std::fs::write(file.path(), text).context("cannot write the temporary file")?;
        run_editor(&editor, file.path()).await?;
        let saved = strip_error(&std::fs::read_to_string(file.path())?);
        if saved == presented {
            return Ok(Edited::Unchanged);
        }
        let base = std::env::current_dir().unwrap_or_else(|_| ".".into());
        let attempt =
            match ops.read_request(saved.as_bytes(), &file.path().display().to_string(), &base) {
                Ok(request) if same_as_stored(&request, &stored) => return Ok(Edited::Unchanged),
                Ok(request) => ops.request_edit_with(id, &request).await,
                Err(e) => Err(e),
            };
        match attempt {
            Ok(detail) => return Ok(Edited::Saved(Box::new(detail))),
            Err(e) => error = Some(fixable(e)?),
        }
        presented = saved;
    }
}

/// The editor to run as an argument vector: `$VISUAL`, then `$EDITOR`, then
/// `vi`, split into words as a shell would (no shell runs it).
fn editor_command() -> anyhow::Result<Vec<String>> {
    let (name, value) = ["VISUAL", "EDITOR"]
        .into_iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        })
        .unwrap_or(("default", "vi".to_string()));
    match shlex::split(&value) {
        Some(words) if !words.is_empty() => Ok(words),
        _ => Err(anyhow!(
            "{name}: `{value}` cannot be split into words (an unclosed quote?): fix it or unset it"
        )),
    }
}

async fn run_editor(editor: &[String], file: &Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(&editor[0])
        .args(&editor[1..])
        .arg(file)
        .status()
        .await
        .with_context(|| {
            format!(
                "cannot run the editor `{}`: set VISUAL or EDITOR",
                editor[0]
            )
        })?;
    if !status.success() {
        bail!(
            "the editor `{}` ended with {status}: nothing was written",
            editor.join(" ")
        );
    }
    Ok(())
}

/// The marker of the lines put on top of the file after an invalid save.
const ERROR_MARK: &str = "# prodops:";

fn with_error_on_top(error: Option<&str>, text: &str) -> String {
    match error {
        None => text.to_string(),
        Some(error) => format!(
            "{ERROR_MARK} not saved: {error}\n{ERROR_MARK} fix it below and save, or quit without saving to cancel\n{text}"
        ),
    }
}

/// The saved text without the error lines put on top of it.
fn strip_error(saved: &str) -> String {
    let mut rest = saved;
    while rest.starts_with(ERROR_MARK) {
        rest = rest.split_once('\n').map_or("", |(_, after)| after);
    }
    rest.to_string()
}

fn same_as_stored(request: &ValidRequest, stored: &RequestDetail) -> bool {
    request.spec.hash() == stored.spec_hash
        && request.meta.title == stored.summary.title
        && request.meta.physics_group == stored.physics_group
        && request.meta.description == stored.description
        && (!request.priority_given || request.meta.priority == stored.summary.priority)
}

/// The one-line message of an error the text can fix; other errors end the session.
fn fixable(e: OpsError) -> anyhow::Result<String> {
    match e {
        OpsError::RequestFile { error, .. } => Ok(error.to_string()),
        OpsError::Invalid(message) => Ok(message.replace('\n', " ")),
        other => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_on_top_is_stripped_before_the_text_is_read_again() {
        let text = "experiment = \"nova\"\n# a comment of the user's\n";
        let shown = with_error_on_top(Some("stage[0].events: must be between 1 and 9"), text);
        assert!(
            shown.starts_with("# prodops: not saved: stage[0].events"),
            "{shown}"
        );
        assert_eq!(strip_error(&shown), text);
        assert_eq!(strip_error(text), text);
    }
}
