//! A time-series chart as server-rendered SVG: one value per time bucket for each of a few
//! series, drawn as lines or as bars, with a value axis (ticks in the chart's unit), a time axis
//! (UTC), a legend, and each bucket's values on hover (an SVG `<title>` per bucket, so it needs no
//! script and no inline style). Colours are CSS classes (`s0`…`s7`) the stylesheet maps to its
//! light and dark palettes. A chart without any value says so instead of drawing empty axes.

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use maud::{html, Markup};

use super::page::duration;

/// The SVG's own coordinate system; the stylesheet scales it to the page's width.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 26.0;
/// Colour classes the stylesheet defines; further series reuse them in turn.
const PALETTE: usize = 8;
/// About how many value ticks an axis gets.
const VALUE_TICKS: f64 = 4.0;
/// The most time ticks an axis gets.
const TIME_TICKS: i64 = 6;
/// Time-tick steps, in seconds: the first that gives at most [`TIME_TICKS`] ticks is used.
const TIME_STEPS_S: &[i64] = &[
    60, 300, 900, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800, 2_592_000,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Line,
    /// Side by side per bucket: for counts.
    Bars,
}

/// What the values measure, for the axis labels and the hover text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Percent,
    Millis,
    Celsius,
    Megabytes,
}

/// One line (or one colour of bars): a value, or none, per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub values: Vec<Option<f64>>,
}

/// A chart of `series` over the buckets starting at `starts`, each `step_s` long.
pub struct Chart<'a> {
    /// Unique on the page: the SVG's title and description ids derive from it.
    pub id: &'a str,
    pub title: &'a str,
    pub kind: Kind,
    pub unit: Unit,
    pub starts: &'a [DateTime<Utc>],
    pub step_s: i64,
    pub series: Vec<Series>,
    /// The value axis' top when no value exceeds it (100 for a percentage).
    pub ceiling: Option<f64>,
    /// What the chart says when it has no value at all.
    pub empty: &'a str,
}

/// The value axis: its top and its ticks from 0, in the axis' display unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub top: f64,
    pub ticks: Vec<f64>,
}

/// The 1, 2, 2.5 or 5 × 10ⁿ step that gives about [`VALUE_TICKS`] ticks up to `max` (at least
/// 1 for counts, which are whole), and the axis it makes: never below `ceiling` unless a value
/// is above it.
pub fn axis(max: f64, ceiling: Option<f64>, whole: bool) -> Axis {
    let max = match ceiling {
        Some(ceiling) if max <= ceiling => ceiling,
        _ => max,
    };
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / VALUE_TICKS;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    if whole {
        step = step.max(1.0).round();
    }
    let count = (max / step - 1e-9).ceil().max(1.0) as i64;
    Axis {
        top: step * count as f64,
        ticks: (0..=count).map(|i| step * i as f64).collect(),
    }
}

/// How a unit's values are shown: divided by `divisor`, followed by `suffix`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub divisor: f64,
    pub suffix: &'static str,
}

impl Scale {
    /// The display unit for values up to `max`: durations in ms, s, min or h and memory in MB
    /// or GB, whichever keeps the axis' numbers readable.
    pub fn of(unit: Unit, max: f64) -> Self {
        let scale = |divisor, suffix| Self { divisor, suffix };
        match unit {
            Unit::Count => scale(1.0, ""),
            Unit::Percent => scale(1.0, "%"),
            Unit::Celsius => scale(1.0, " °C"),
            Unit::Megabytes if max >= 2_048.0 => scale(1_024.0, " GB"),
            Unit::Megabytes => scale(1.0, " MB"),
            Unit::Millis if max >= 7_200_000.0 => scale(3_600_000.0, " h"),
            Unit::Millis if max >= 120_000.0 => scale(60_000.0, " min"),
            Unit::Millis if max >= 2_000.0 => scale(1_000.0, " s"),
            Unit::Millis => scale(1.0, " ms"),
        }
    }

    pub fn label(&self, value: f64) -> String {
        format!("{}{}", number(value), self.suffix)
    }
}

/// A tick's number without needless decimals: `2`, `2.5`, `0.25`.
fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// One value as the hover text and the description say it, in the unit's own terms.
pub fn value_text(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Count => format!("{value:.0}"),
        Unit::Percent => format!("{value:.1}%"),
        Unit::Celsius => format!("{value:.1} °C"),
        Unit::Megabytes => format!("{:.1} GB", value / 1_024.0),
        Unit::Millis => duration(value.round() as i64),
    }
}

/// The time ticks of `[first, end)`: multiples (since the epoch, UTC) of the smallest step in
/// [`TIME_STEPS_S`] that gives at most [`TIME_TICKS`], with that step.
pub fn time_ticks(first: DateTime<Utc>, end: DateTime<Utc>) -> (i64, Vec<DateTime<Utc>>) {
    let (from, to) = (first.timestamp(), end.timestamp());
    let span = (to - from).max(1);
    let step = *TIME_STEPS_S
        .iter()
        .find(|s| span / **s <= TIME_TICKS)
        .unwrap_or(TIME_STEPS_S.last().expect("time steps"));
    let start = from + (step - from.rem_euclid(step)) % step;
    let ticks = (0..)
        .map(|i| start + i * step)
        .take_while(|t| *t <= to)
        .filter_map(|t| Utc.timestamp_opt(t, 0).single())
        .collect();
    (step, ticks)
}

/// A time tick's label: the time of day, the date once ticks are days apart, both when a span
/// of several days has ticks within a day.
fn time_label(at: DateTime<Utc>, step_s: i64, span_s: i64) -> String {
    let format = if step_s >= 86_400 {
        "%b %d"
    } else if span_s > 86_400 {
        "%b %d %H:%M"
    } else {
        "%H:%M"
    };
    at.format(format).to_string()
}

fn coordinate(value: f64) -> String {
    format!("{value:.1}")
}

impl Chart<'_> {
    fn max(&self) -> Option<f64> {
        self.series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .reduce(f64::max)
    }

    /// `<figure>` with the title, the legend and the SVG — or the empty state.
    pub fn render(&self) -> Markup {
        let Some(max) = self.max() else {
            return html! {
                figure.chart.card data-chart=(self.id) data-empty {
                    figcaption { h3 { (self.title) } }
                    p.chart-empty.muted { (self.empty) }
                }
            };
        };
        let scale = Scale::of(self.unit, max);
        let ceiling = self.ceiling.map(|c| c / scale.divisor);
        let axis = axis(max / scale.divisor, ceiling, self.unit == Unit::Count);
        let title_id = format!("{}-title", self.id);
        let desc_id = format!("{}-desc", self.id);
        html! {
            figure.chart.card data-chart=(self.id) {
                figcaption {
                    h3 id=(title_id) { (self.title) }
                    ul.legend aria-hidden="true" {
                        @for (i, series) in self.series.iter().enumerate() {
                            li { span.key.(self.kind_class()).(colour(i)) {} (series.label) }
                        }
                    }
                }
                svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
                    aria-labelledby=(title_id) aria-describedby=(desc_id)
                    xmlns="http://www.w3.org/2000/svg" {
                    desc id=(desc_id) { (self.description()) }
                    (self.value_axis(&axis, scale))
                    (self.time_axis())
                    (self.marks(&axis, scale))
                    (self.hover_targets())
                }
            }
        }
    }

    fn kind_class(&self) -> &'static str {
        match self.kind {
            Kind::Line => "line",
            Kind::Bars => "bar",
        }
    }

    fn slot(&self) -> f64 {
        (WIDTH - LEFT - RIGHT) / self.starts.len().max(1) as f64
    }

    fn y(&self, value: f64, axis: &Axis) -> f64 {
        let plot = HEIGHT - TOP - BOTTOM;
        HEIGHT - BOTTOM - (value / axis.top).clamp(0.0, 1.0) * plot
    }

    fn value_axis(&self, axis: &Axis, scale: Scale) -> Markup {
        html! {
            g.grid {
                @for tick in &axis.ticks {
                    @let y = coordinate(self.y(*tick, axis));
                    line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y) y2=(y) {}
                    text.tick x=(LEFT - 6.0) y=(y) text-anchor="end" dominant-baseline="middle" { (scale.label(*tick)) }
                }
            }
        }
    }

    fn time_axis(&self) -> Markup {
        let (Some(first), Some(last)) = (self.starts.first(), self.starts.last()) else {
            return html! {};
        };
        let end = *last + Duration::seconds(self.step_s);
        let span = (end - *first).num_seconds().max(1);
        let (step, ticks) = time_ticks(*first, end);
        let x = |at: DateTime<Utc>| {
            LEFT + (at - *first).num_seconds() as f64 / span as f64 * (WIDTH - LEFT - RIGHT)
        };
        html! {
            g.time {
                line.axis x1=(LEFT) x2=(WIDTH - RIGHT) y1=(HEIGHT - BOTTOM) y2=(HEIGHT - BOTTOM) {}
                @for tick in ticks {
                    @let at = coordinate(x(tick));
                    line.axis x1=(at) x2=(at) y1=(HEIGHT - BOTTOM) y2=(HEIGHT - BOTTOM + 4.0) {}
                    text.tick x=(at) y=(HEIGHT - 6.0) text-anchor="middle" { (time_label(tick, step, span)) }
                }
            }
        }
    }

    fn marks(&self, axis: &Axis, scale: Scale) -> Markup {
        match self.kind {
            Kind::Line => html! {
                @for (i, series) in self.series.iter().enumerate() {
                    path.line.(colour(i)) d=(self.path(series, axis, scale)) {}
                    @for (x, y) in self.lone_points(series, axis, scale) {
                        circle.dot.(colour(i)) cx=(x) cy=(y) r="3" {}
                    }
                }
            },
            Kind::Bars => html! {
                @for (i, series) in self.series.iter().enumerate() {
                    path.bars.(colour(i)) d=(self.bars(i, series, axis, scale)) {}
                }
            },
        }
    }

    /// A series' bars, side by side with the other series' in each bucket, as one path of
    /// rectangles (a bar is a few bytes, not an element); none for 0.
    fn bars(&self, index: usize, series: &Series, axis: &Axis, scale: Scale) -> String {
        let slot = self.slot();
        let width = slot * 0.8 / self.series.len().max(1) as f64;
        let bottom = HEIGHT - BOTTOM;
        let mut d = String::new();
        for (b, value) in series.values.iter().enumerate() {
            if let Some(value) = value.filter(|v| *v > 0.0) {
                let x = LEFT + b as f64 * slot + slot * 0.1 + index as f64 * width;
                let y = self.y(value / scale.divisor, axis);
                d.push_str(&format!(
                    "M{} {}h{}V{bottom}h-{}Z",
                    coordinate(x),
                    coordinate(y),
                    coordinate(width),
                    coordinate(width)
                ));
            }
        }
        d
    }

    /// The value of bucket `b` of a series, as the point of a line: the bucket's middle.
    fn point(&self, b: usize, value: f64, axis: &Axis, scale: Scale) -> (String, String) {
        (
            coordinate(LEFT + (b as f64 + 0.5) * self.slot()),
            coordinate(self.y(value / scale.divisor, axis)),
        )
    }

    /// The line through a series' values, broken where a bucket has none.
    fn path(&self, series: &Series, axis: &Axis, scale: Scale) -> String {
        let mut d = String::new();
        let mut drawing = false;
        for (b, value) in series.values.iter().enumerate() {
            match value {
                Some(value) => {
                    let (x, y) = self.point(b, *value, axis, scale);
                    d.push_str(&format!("{}{x} {y}", if drawing { "L" } else { "M" }));
                    drawing = true;
                }
                None => drawing = false,
            }
        }
        d
    }

    /// The values with a gap (or the edge) on both sides, which no line segment shows: dots.
    fn lone_points(&self, series: &Series, axis: &Axis, scale: Scale) -> Vec<(String, String)> {
        let values = &series.values;
        let empty = |b: Option<usize>| b.and_then(|b| values.get(b)).is_none_or(|v| v.is_none());
        values
            .iter()
            .enumerate()
            .filter_map(|(b, value)| {
                let value = (*value)?;
                (empty(b.checked_sub(1)) && empty(Some(b + 1)))
                    .then(|| self.point(b, value, axis, scale))
            })
            .collect()
    }

    /// Whether bucket `b` has anything to say on hover: a value (for counts, one above 0).
    fn has_data(&self, b: usize) -> bool {
        self.series.iter().any(|s| {
            s.values
                .get(b)
                .copied()
                .flatten()
                .is_some_and(|v| self.unit != Unit::Count || v != 0.0)
        })
    }

    /// A transparent column per bucket with data whose `<title>` says the bucket's values. The
    /// group's transform makes a bucket one unit wide, so each column is only its index: a day's
    /// 97 buckets stay a few kilobytes per chart.
    fn hover_targets(&self) -> Markup {
        let transform = format!("translate({LEFT} {TOP}) scale({:.3} 1)", self.slot());
        html! {
            g.hover transform=(transform) {
                @for (b, start) in self.starts.iter().enumerate() {
                    @if self.has_data(b) {
                        rect x=(b) width="1" height=(HEIGHT - TOP - BOTTOM)
                            data-start=(start.to_rfc3339_opts(SecondsFormat::Secs, true)) {
                            title { (self.bucket_text(b)) }
                        }
                    }
                }
            }
        }
    }

    /// `2026-12-04 07:15 UTC · Submitted: 2 · Completed: 3 · Failed: 1` (`—` for no value).
    pub fn bucket_text(&self, bucket: usize) -> String {
        let mut text = self.starts[bucket].format("%Y-%m-%d %H:%M UTC").to_string();
        for series in &self.series {
            let value = series.values.get(bucket).copied().flatten();
            text.push_str(&format!(
                " · {}: {}",
                series.label,
                value.map_or("—".to_string(), |v| value_text(self.unit, v))
            ));
        }
        text
    }

    /// What a screen reader hears: the span, and per series its total (counts) or range.
    pub fn description(&self) -> String {
        let mut parts = Vec::new();
        if let (Some(first), Some(last)) = (self.starts.first(), self.starts.last()) {
            parts.push(format!(
                "{} buckets of {} from {} to {}.",
                self.starts.len(),
                step_text(self.step_s),
                first.format("%Y-%m-%d %H:%M UTC"),
                (*last + Duration::seconds(self.step_s)).format("%Y-%m-%d %H:%M UTC"),
            ));
        }
        for series in &self.series {
            let values: Vec<f64> = series.values.iter().flatten().copied().collect();
            let text = |v| value_text(self.unit, v);
            let summary = match (
                values.iter().copied().reduce(f64::min),
                values.iter().copied().reduce(f64::max),
            ) {
                (Some(_), Some(max)) if self.unit == Unit::Count => format!(
                    "{} in all, at most {} in a bucket",
                    text(values.iter().sum()),
                    text(max)
                ),
                (Some(min), Some(max)) => format!("from {} to {}", text(min), text(max)),
                _ => "no values".to_string(),
            };
            parts.push(format!("{}: {summary}.", series.label));
        }
        parts.join(" ")
    }
}

/// A bucket's length in its largest whole unit: `15 min`, `6 h`, `1 d`.
pub fn step_text(step_s: i64) -> String {
    match step_s {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn colour(index: usize) -> String {
    format!("s{}", index % PALETTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    #[test]
    fn value_axes_end_on_a_round_step_above_the_largest_value() {
        assert_eq!(axis(7.0, None, true).ticks, [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(axis(3.0, None, true).ticks, [0.0, 1.0, 2.0, 3.0]);
        // Counts are whole: one job is one tick, not four quarters.
        assert_eq!(axis(1.0, None, true).ticks, [0.0, 1.0]);
        assert_eq!(axis(1.0, None, false).ticks, [0.0, 0.25, 0.5, 0.75, 1.0]);
        let big = axis(5_500.0, None, false);
        assert_eq!((big.top, big.ticks.len()), (6_000.0, 4), "steps of 2000");
        assert_eq!(axis(9.5, None, false).top, 10.0);
        // Nothing but zeros still has an axis.
        assert_eq!(axis(0.0, None, true).ticks, [0.0, 1.0]);
    }

    #[test]
    fn a_ceiling_holds_the_axis_until_a_value_passes_it() {
        assert_eq!(
            axis(42.0, Some(100.0), false).ticks,
            [0.0, 25.0, 50.0, 75.0, 100.0]
        );
        assert_eq!(axis(130.0, Some(100.0), false).top, 150.0);
    }

    #[test]
    fn scales_keep_the_numbers_readable() {
        assert_eq!(Scale::of(Unit::Millis, 800.0).suffix, " ms");
        assert_eq!(Scale::of(Unit::Millis, 6_500.0).suffix, " s");
        assert_eq!(Scale::of(Unit::Millis, 600_000.0).label(5.0), "5 min");
        assert_eq!(Scale::of(Unit::Millis, 8_000_000.0).divisor, 3_600_000.0);
        assert_eq!(Scale::of(Unit::Megabytes, 61_440.0).label(60.0), "60 GB");
        assert_eq!(Scale::of(Unit::Megabytes, 512.0).label(512.0), "512 MB");
        assert_eq!(Scale::of(Unit::Percent, 50.0).label(2.5), "2.5%");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(value_text(Unit::Megabytes, 61_440.0), "60.0 GB");
        assert_eq!(value_text(Unit::Millis, 210_000.0), "3 min 30 s");
    }

    #[test]
    fn time_ticks_fall_on_round_times_within_the_span() {
        let (step, ticks) = time_ticks(t("2026-12-04T07:07:00Z"), t("2026-12-04T08:08:00Z"));
        assert_eq!(step, 900);
        assert_eq!(ticks.first(), Some(&t("2026-12-04T07:15:00Z")));
        assert_eq!(ticks.last(), Some(&t("2026-12-04T08:00:00Z")));
        assert_eq!(ticks.len(), 4);
        let (step, ticks) = time_ticks(t("2026-12-03T08:00:00Z"), t("2026-12-04T08:15:00Z"));
        assert_eq!((step, ticks.len()), (21_600, 4), "every 6 h over a day");
        let (step, _) = time_ticks(t("2026-11-04T00:00:00Z"), t("2026-12-04T06:00:00Z"));
        assert_eq!(step, 604_800, "weeks over 30 days");
        assert_eq!(
            time_label(t("2026-12-04T06:00:00Z"), 604_800, 30 * 86_400),
            "Dec 04"
        );
        assert_eq!(time_label(t("2026-12-04T06:00:00Z"), 3_600, 3_600), "06:00");
    }

    fn chart<'a>(starts: &'a [DateTime<Utc>], kind: Kind, series: Vec<Series>) -> Chart<'a> {
        Chart {
            id: "c",
            title: "Test",
            kind,
            unit: Unit::Count,
            starts,
            step_s: 900,
            series,
            ceiling: None,
            empty: "Nothing here.",
        }
    }

    fn starts() -> Vec<DateTime<Utc>> {
        (0..4)
            .map(|i| t("2026-12-04T07:00:00Z") + Duration::minutes(15 * i))
            .collect()
    }

    #[test]
    fn each_bucket_says_its_values_on_hover_and_the_description_sums_them_up() {
        let starts = starts();
        let series = vec![
            Series {
                label: "Submitted".into(),
                values: vec![Some(3.0), Some(0.0), Some(2.0), Some(5.0)],
            },
            Series {
                label: "Failed".into(),
                values: vec![Some(1.0), None, Some(0.0), Some(0.0)],
            },
        ];
        let c = chart(&starts, Kind::Bars, series);
        assert_eq!(
            c.bucket_text(0),
            "2026-12-04 07:00 UTC · Submitted: 3 · Failed: 1"
        );
        assert_eq!(
            c.bucket_text(1),
            "2026-12-04 07:15 UTC · Submitted: 0 · Failed: —"
        );
        assert_eq!(
            c.description(),
            "4 buckets of 15 min from 2026-12-04 07:00 UTC to 2026-12-04 08:00 UTC. \
             Submitted: 10 in all, at most 5 in a bucket. Failed: 1 in all, at most 1 in a bucket."
        );
        let svg = c.render().into_string();
        assert_eq!(
            svg.matches("<title>").count(),
            3,
            "one per bucket with jobs"
        );
        assert!(
            !svg.contains("data-start=\"2026-12-04T07:15:00Z\""),
            "0 and none"
        );
        assert_eq!(svg.matches("V194h").count(), 4, "no bar for 0");
        // Slots of 161 px, two series: bars 64.4 px wide from 16.1 px into the slot.
        assert!(svg.contains("d=\"M80.1 103.0h64.4V194h-64.4Z"), "{svg}");
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("data-start=\"2026-12-04T07:45:00Z\""));
        // Axis 0..6 in steps of 2 for at most 5: the 5 reaches 5/6 of the plot's height.
        assert!(svg.contains(">6</text>"));
    }

    #[test]
    fn lines_break_at_gaps_and_lone_values_are_dots() {
        let starts = starts();
        let c = chart(
            &starts,
            Kind::Line,
            vec![Series {
                label: "p50".into(),
                values: vec![Some(1.0), Some(2.0), None, Some(2.0)],
            }],
        );
        let (axis, scale) = (axis(2.0, None, true), Scale::of(Unit::Count, 2.0));
        // Slots of 161 px from x = 64; y from 194 (0) up to 12 (2).
        let d = c.path(&c.series[0], &axis, scale);
        assert_eq!(d, "M144.5 103.0L305.5 12.0M627.5 12.0");
        let dots = c.lone_points(&c.series[0], &axis, scale);
        assert_eq!(dots, [("627.5".to_string(), "12.0".to_string())]);
    }

    #[test]
    fn a_chart_without_values_says_so() {
        let starts = starts();
        let c = chart(
            &starts,
            Kind::Line,
            vec![Series {
                label: "p50".into(),
                values: vec![None; 4],
            }],
        );
        let html = c.render().into_string();
        assert!(html.contains("Nothing here."));
        assert!(!html.contains("<svg"));
    }
}
