//! What the table panes (Triage, Approvals, History) share: a cursor over
//! the rows a filter lets through, the table's scroll, and a page height.

use super::movement;
use crate::tui::action::Action;
use ratatui::widgets::TableState;

/// The cursor, filter and scroll of a filtered table.
#[derive(Debug, Default)]
pub struct List {
    /// The selected row among those shown.
    pub row: usize,
    /// The filter typed with `/`.
    pub filter: String,
    /// The table's scroll (ratatui keeps the selection in view).
    pub table: TableState,
    /// Rows a page shows (set while drawing).
    pub page: usize,
}

impl List {
    /// Moves the cursor for a movement action over `len` rows; false for
    /// any other action.
    pub fn moved(&mut self, action: Action, len: usize) -> bool {
        match movement(action, self.page) {
            Some(by) => {
                self.row = super::step(self.row, by, len);
                true
            }
            None => false,
        }
    }

    /// Esc: drops the filter; false when there was none.
    pub fn drop_filter(&mut self) -> bool {
        if self.filter.is_empty() {
            return false;
        }
        self.filter.clear();
        self.row = 0;
        true
    }

    /// Sets the filter as typed, back at the first row.
    pub fn set_filter(&mut self, text: &str) {
        self.filter = text.to_string();
        self.row = 0;
    }

    /// A click on line `row` inside the border (line 0 is the header).
    pub fn click(&mut self, row: usize, len: usize) {
        if row == 0 {
            return;
        }
        let at = self.table.offset() + row - 1;
        if at < len {
            self.row = at;
        }
    }

    /// Keeps the cursor on one of `len` rows before drawing a table of
    /// `height` lines (border and header included), and selects it when
    /// `shown`.
    pub fn prepare(&mut self, len: usize, height: u16, shown: bool) {
        self.page = height.saturating_sub(3) as usize;
        self.row = self.row.min(len.saturating_sub(1));
        self.table.select((shown && len > 0).then_some(self.row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_stays_on_the_rows_shown_and_a_click_skips_the_header() {
        let mut list = List {
            page: 5,
            ..List::default()
        };
        assert!(list.moved(Action::PageDown, 3));
        assert_eq!(list.row, 2);
        assert!(!list.moved(Action::Approve, 3));
        list.click(0, 3);
        assert_eq!(list.row, 2, "the header is not a row");
        list.click(1, 3);
        assert_eq!(list.row, 0);
        list.set_filter("x");
        assert!(list.drop_filter());
        assert!(!list.drop_filter());
    }
}
