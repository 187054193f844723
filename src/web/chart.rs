//! A key's uses per day as a small bar chart, drawn on the server as SVG: it needs no script,
//! scales with the text, and a screen reader hears its summary.

use chrono::{Duration, NaiveDate};
use std::fmt::Write;

const BAR: usize = 6;
const HEIGHT: i64 = 32;

/// The chart of `days` (uses per day, oldest first, the last being `today`); empty without
/// days.
pub fn daily_uses_svg(days: &[i64], today: NaiveDate) -> String {
    if days.is_empty() {
        return String::new();
    }
    let total: i64 = days.iter().sum();
    let max = days.iter().copied().max().unwrap_or(0);
    let first = today - Duration::days(days.len() as i64 - 1);
    let summary = if total == 0 {
        format!("No uses in the last {} days.", days.len())
    } else {
        let busiest = days.iter().rposition(|d| *d == max).unwrap_or(0);
        let busiest_day = first + Duration::days(busiest as i64);
        format!(
            "{total} {} in the last {} days; most on {} ({max}).",
            if total == 1 { "use" } else { "uses" },
            days.len(),
            busiest_day.format("%-d %b")
        )
    };
    let width = days.len() * BAR;
    let mut svg = format!(
        "<svg class=\"usage\" role=\"img\" viewBox=\"0 0 {width} {HEIGHT}\" width=\"{width}\" height=\"{HEIGHT}\" \
         aria-label=\"{summary}\"><title>{summary}</title>"
    );
    for (i, uses) in days.iter().enumerate() {
        let day = first + Duration::days(i as i64);
        // At least a sliver for any use, so one call among thousands still shows.
        let height = if *uses == 0 { 1 } else { (uses * (HEIGHT - 2) / max.max(1)).max(3) + 1 };
        let class = if *uses == 0 { "none" } else { "used" };
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{height}\"><title>{}: {uses}</title></rect>",
            i * BAR,
            HEIGHT - height,
            BAR - 1,
            day.format("%-d %b")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_bar_a_day_and_says_what_it_shows() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let mut days = vec![0; 30];
        days[29] = 4;
        days[27] = 10;
        let svg = daily_uses_svg(&days, today);
        assert_eq!(svg.matches("<rect").count(), 30);
        assert!(svg.contains("aria-label=\"14 uses in the last 30 days; most on 1 Dec (10).\""), "{svg}");
        assert!(svg.contains("<title>3 Dec: 4</title>") && svg.contains("<title>4 Nov: 0</title>"), "{svg}");
        assert!(daily_uses_svg(&[0; 30], today).contains("No uses in the last 30 days."));
        assert_eq!(daily_uses_svg(&[], today), "");
    }
}
