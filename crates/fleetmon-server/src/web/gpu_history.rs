//! GPU history for the pages' charts: the GPU metric series agents send (`gpu_utilization_pct`,
//! `gpu_memory_used_mb`, `gpu_temperature_c`, labelled `{"gpu": "<index>"}`; docs/api.md), read
//! through `query::series::load` as `GET …/metrics/series` reads them (`agg=avg`), then drawn per
//! GPU (a machine's page) or as the fleet's mean and highest GPU per bucket (the metrics page).

use maud::Markup;
use sqlx::PgConnection;
use uuid::Uuid;

use super::chart::{self, Chart, Kind, Unit};
use crate::db::DbError;
use crate::query::series::{self, Agg, Filters, Series};
use crate::query::window::Buckets;

/// A GPU metric the pages chart.
pub struct GpuMetric {
    /// The series' name, as agents send it.
    pub name: &'static str,
    pub title: &'static str,
    unit: Unit,
    ceiling: Option<f64>,
    /// The fleet chart's second line: the highest GPU of each bucket.
    peak: &'static str,
}

pub const METRICS: [GpuMetric; 3] = [
    GpuMetric {
        name: "gpu_utilization_pct",
        title: "GPU utilisation",
        unit: Unit::Percent,
        ceiling: Some(100.0),
        peak: "Busiest GPU",
    },
    GpuMetric {
        name: "gpu_memory_used_mb",
        title: "GPU memory used",
        unit: Unit::Megabytes,
        ceiling: None,
        peak: "Fullest GPU",
    },
    GpuMetric {
        name: "gpu_temperature_c",
        title: "GPU temperature",
        unit: Unit::Celsius,
        ceiling: None,
        peak: "Hottest GPU",
    },
];

/// One metric's series over a window.
pub struct History {
    pub metric: &'static GpuMetric,
    pub series: Vec<Series>,
    /// Whether more series matched than `query::series` answers with.
    pub truncated: bool,
}

/// Each GPU metric's series of `machine` (or of the whole fleet), averaged per bucket.
pub async fn load(
    conn: &mut PgConnection,
    org_id: Uuid,
    machine: Option<&str>,
    buckets: Buckets,
) -> Result<Vec<History>, DbError> {
    let filters = Filters {
        machine: machine.map(str::to_string),
        worker: None,
    };
    let mut histories = Vec::new();
    for metric in &METRICS {
        let (series, truncated) =
            series::load(&mut *conn, org_id, metric.name, &filters, buckets, Agg::Avg).await?;
        histories.push(History {
            metric,
            series,
            truncated,
        });
    }
    Ok(histories)
}

/// `GPU 0`, `GPU 1 · w-3` (a worker's own series): a series as one GPU's line.
fn gpu_label(series: &Series) -> (i64, String) {
    let gpu = series.labels["gpu"].as_str().unwrap_or("");
    let index = gpu.parse().unwrap_or(i64::MAX);
    let mut label = if gpu.is_empty() {
        "GPU".to_string()
    } else {
        format!("GPU {gpu}")
    };
    if let Some(worker) = &series.worker_id {
        label.push_str(&format!(" · {worker}"));
    }
    (index, label)
}

impl History {
    fn chart(&self, id: &str, buckets: &Buckets, series: Vec<chart::Series>) -> Markup {
        let starts = buckets.starts();
        Chart {
            id,
            title: self.metric.title,
            kind: Kind::Line,
            unit: self.metric.unit,
            starts: &starts,
            step_s: buckets.step_s,
            series,
            ceiling: self.metric.ceiling,
            empty: "No samples of this metric in this range.",
        }
        .render()
    }

    /// One line per GPU, by GPU index.
    pub fn per_gpu(&self, buckets: &Buckets) -> Markup {
        let mut lines: Vec<((i64, String), chart::Series)> = self
            .series
            .iter()
            .map(|s| {
                let (index, label) = gpu_label(s);
                let values = s.points.iter().map(|(_, v)| *v).collect();
                ((index, label.clone()), chart::Series { label, values })
            })
            .collect();
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        let id = format!("machine-{}", self.metric.name);
        self.chart(&id, buckets, lines.into_iter().map(|(_, s)| s).collect())
    }

    /// The mean of the GPUs that have a value in each bucket, and the highest of them.
    pub fn fleet(&self, buckets: &Buckets) -> Markup {
        let count = buckets.count() as usize;
        let mut mean = Vec::with_capacity(count);
        let mut peak = Vec::with_capacity(count);
        for b in 0..count {
            let values: Vec<f64> = self
                .series
                .iter()
                .filter_map(|s| s.points.get(b).and_then(|(_, v)| *v))
                .collect();
            mean.push(
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
            );
            peak.push(values.iter().copied().reduce(f64::max));
        }
        let lines = vec![
            chart::Series {
                label: "Mean of GPUs".into(),
                values: mean,
            },
            chart::Series {
                label: self.metric.peak.into(),
                values: peak,
            },
        ];
        let id = format!("fleet-{}", self.metric.name);
        self.chart(&id, buckets, lines)
    }
}
