//! `aether-cli top`: the daemon's topics and subscribers with their rates,
//! redrawn in place (ratatui over crossterm, in the alternate screen) every
//! interval until q, Esc or Ctrl-C, or after `--iterations` redraws. Reads
//! what `stats` reads (the admin pipe's `monitor` right).

use crate::fmt;
use aetherd::admin::{self, Command};
use aetherd::stats::Stats;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Row, Table};
use ratatui::{DefaultTerminal, Frame};
use std::path::Path;
use std::time::{Duration, Instant};

/// Puts the terminal back however `run` ends (an error, a panic).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
    }
}

/// Runs the view; `Err` carries a message for the caller to print.
pub(crate) fn run(socket: &Path, interval: f64, iterations: Option<u64>, timeout: f64) -> Result<(), String> {
    let interval = Duration::from_secs_f64(interval.max(0.1));
    let timeout = Duration::from_secs_f64(timeout.max(0.0));
    // The first snapshot before the screen changes: a daemon that is not
    // there is a plain error line, as for every other command.
    let mut stats = snapshot(socket, timeout)?;
    enable_raw_mode().map_err(|e| format!("the terminal: {e}"))?;
    let _restore = Restore;
    execute!(std::io::stdout(), EnterAlternateScreen).map_err(|e| format!("the terminal: {e}"))?;
    let mut terminal = DefaultTerminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))
        .map_err(|e| format!("the terminal: {e}"))?;
    let mut drawn = 0u64;
    loop {
        terminal
            .draw(|f| draw(f, socket, &stats, interval))
            .map_err(|e| format!("the terminal: {e}"))?;
        drawn += 1;
        if iterations.is_some_and(|n| drawn >= n) {
            return Ok(());
        }
        let until = Instant::now() + interval;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if event::poll(left).map_err(|e| format!("the terminal: {e}"))? {
                if let Event::Key(k) = event::read().map_err(|e| format!("the terminal: {e}"))? {
                    let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.kind == KeyEventKind::Press && (ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc))
                    {
                        return Ok(());
                    }
                }
            }
        }
        stats = snapshot(socket, timeout)?;
    }
}

fn snapshot(socket: &Path, timeout: Duration) -> Result<Stats, String> {
    let v = admin::call(socket, Command::Stats, timeout).map_err(|e| e.message)?;
    serde_json::from_value(v).map_err(|e| format!("the daemon's statistics do not parse ({e}): is it another version?"))
}

fn draw(f: &mut Frame, socket: &Path, s: &Stats, interval: Duration) {
    let d = &s.daemon;
    let [head, topics, subs] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(s.topics.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(f.area());
    f.render_widget(
        ratatui::widgets::Paragraph::new(vec![
            Line::from(format!(
                "aetherd {} pid {} up {}  {} topics  {} clients  {} in segments{}",
                d.version,
                d.pid,
                fmt::duration(d.uptime_s),
                d.topics,
                d.clients,
                fmt::bytes(d.segment_bytes),
                if d.draining { "  DRAINING" } else { "" }
            )),
            Line::from(format!(
                "{}  every {:.1} s  q: quit",
                socket.display(),
                interval.as_secs_f64()
            )),
        ]),
        head,
    );
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let topic_rows = s.topics.iter().map(|t| {
        Row::new(vec![
            t.name.clone(),
            t.policy.clone(),
            t.publishers.to_string(),
            t.subscribers.to_string(),
            fmt::count(t.published as f64),
            format!("{}/s", fmt::count(t.rate_msgs_per_s)),
            format!("{}/s", fmt::bytes(t.rate_bytes_per_s as u64)),
            fmt::count(t.lost as f64),
            t.durability.clone(),
        ])
    });
    f.render_widget(
        Table::new(
            topic_rows,
            [
                Constraint::Min(12),
                Constraint::Length(8),
                Constraint::Length(5),
                Constraint::Length(5),
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(vec![
                "TOPIC",
                "POLICY",
                "PUBS",
                "SUBS",
                "PUBLISHED",
                "RATE",
                "BYTES",
                "LOST",
                "DURABILITY",
            ])
            .style(bold),
        )
        .block(Block::default().borders(Borders::TOP).title(" topics ")),
        topics,
    );
    let sub_rows = s.subscribers.iter().map(|x| {
        Row::new(vec![
            x.topic.clone(),
            x.slot.to_string(),
            x.client.to_string(),
            x.delivery.clone(),
            fmt::count(x.delivered as f64),
            fmt::count(x.lag_messages as f64),
            fmt::count(x.lost as f64),
            fmt::duration(x.idle_s),
        ])
    });
    f.render_widget(
        Table::new(
            sub_rows,
            [
                Constraint::Min(12),
                Constraint::Length(5),
                Constraint::Length(7),
                Constraint::Length(11),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(8),
            ],
        )
        .header(
            Row::new(vec![
                "TOPIC",
                "SLOT",
                "CLIENT",
                "DELIVERY",
                "DELIVERED",
                "LAG",
                "LOST",
                "IDLE",
            ])
            .style(bold),
        )
        .block(Block::default().borders(Borders::TOP).title(" subscribers ")),
        subs,
    );
}
