//! What a process measured, in a form that merges: named latency histograms, counters,
//! maxima and timestamped events (for latencies whose two ends are seen in different
//! processes, joined by the parent). Children hand theirs to the parent as one JSON line, the
//! histograms in HDR's V2 serialization, base64.

use std::collections::BTreeMap;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use easel_benches::histogram;
use easel_benches::shard::Clock;
pub(crate) use easel_benches::{TICKS_PER_SEC, cpu_ticks, summary};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde_json::{Value, json};

/// The measurement window, in clock ms.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) from: f64,
    pub(crate) to: f64,
}

impl Window {
    /// A window not known yet: contains nothing, ends never.
    pub(crate) const UNKNOWN: Window = Window { from: f64::MAX, to: f64::MAX };

    pub(crate) fn contains(self, ms: f64) -> bool {
        (self.from..self.to).contains(&ms)
    }

    pub(crate) fn seconds(self) -> f64 {
        (self.to - self.from) / 1000.0
    }
}

/// Waits for the window (set once everyone is in).
pub(crate) async fn until_window(rx: &mut tokio::sync::watch::Receiver<Option<Window>>) -> Window {
    loop {
        if let Some(w) = *rx.borrow_and_update() {
            return w;
        }
        if rx.changed().await.is_err() {
            // The window's sender is gone: an empty window ends the run at once.
            return Window { from: 0.0, to: 0.0 };
        }
    }
}

/// Named measurements of one process (or, merged, of all).
#[derive(Default)]
pub(crate) struct Tally {
    hists: BTreeMap<String, Histogram<u64>>,
    /// Latencies (µs) recorded and not yet in `hists`. Why: a histogram of this range is
    /// ~200 KiB, and when each lean client made its own at its first sample of a kind, a
    /// process of 2,000 zeroed 400 MB at once (at the first chat, the first poll…): the
    /// generator stalled for hundreds of ms, which it reported as the server's latency. A
    /// client's samples are a few KiB; the process's tally puts them in one histogram.
    samples: BTreeMap<String, Vec<u64>>,
    counts: BTreeMap<String, u64>,
    maxima: BTreeMap<String, f64>,
    events: BTreeMap<String, Vec<(f64, f64)>>,
}

impl Tally {
    /// Records a latency in ms.
    pub(crate) fn latency(&mut self, name: &str, ms: f64) {
        let us = (ms.max(0.001) * 1000.0) as u64;
        match self.samples.get_mut(name) {
            Some(v) => v.push(us),
            None => {
                self.samples.insert(name.to_owned(), vec![us]);
            }
        }
    }

    /// Puts the latencies recorded so far into their histograms.
    fn settle(&mut self) {
        for (name, values) in std::mem::take(&mut self.samples) {
            let h = self.hists.entry(name).or_insert_with(histogram);
            for us in values {
                let _ = h.record(us);
            }
        }
    }

    pub(crate) fn count(&mut self, name: &str, n: u64) {
        match self.counts.get_mut(name) {
            Some(c) => *c += n,
            None => {
                self.counts.insert(name.to_owned(), n);
            }
        }
    }

    pub(crate) fn max(&mut self, name: &str, value: f64) {
        let m = self.maxima.entry(name.to_owned()).or_insert(value);
        *m = m.max(value);
    }

    /// Remembers a pair (e.g. who, when) for the parent to join with another process's.
    pub(crate) fn event(&mut self, name: &str, a: f64, b: f64) {
        self.events.entry(name.to_owned()).or_default().push((a, b));
    }

    pub(crate) fn hist(&mut self, name: &str) -> Option<&Histogram<u64>> {
        self.settle();
        self.hists.get(name)
    }

    pub(crate) fn counter(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    pub(crate) fn maximum(&self, name: &str) -> Option<f64> {
        self.maxima.get(name).copied()
    }

    pub(crate) fn events(&self, name: &str) -> &[(f64, f64)] {
        self.events.get(name).map_or(&[], Vec::as_slice)
    }

    /// Counters whose names start with `prefix`, prefix removed.
    pub(crate) fn counters_under(&self, prefix: &str) -> BTreeMap<String, u64> {
        self.counts.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), *v))).collect()
    }

    pub(crate) fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        for (name, mut values) in other.samples {
            self.samples.entry(name).or_default().append(&mut values);
        }
        for (name, h) in other.hists {
            match self.hists.get_mut(&name) {
                Some(into) => into.add(&h).context("merging histograms")?,
                None => {
                    self.hists.insert(name, h);
                }
            }
        }
        for (name, n) in other.counts {
            self.count(&name, n);
        }
        for (name, v) in other.maxima {
            self.max(&name, v);
        }
        for (name, mut e) in other.events {
            self.events.entry(name).or_default().append(&mut e);
        }
        Ok(())
    }

    /// One JSON value, histograms as base64 of HDR V2.
    pub(crate) fn into_json(mut self) -> anyhow::Result<Value> {
        self.settle();
        let mut hists = serde_json::Map::new();
        for (name, h) in &self.hists {
            let mut bytes = Vec::new();
            V2Serializer::new().serialize(h, &mut bytes).context("serializing a histogram")?;
            hists.insert(name.clone(), Value::String(BASE64.encode(bytes)));
        }
        Ok(json!({ "hists": hists, "counts": self.counts, "maxima": self.maxima, "events": self.events }))
    }

    pub(crate) fn from_json(value: &Value) -> anyhow::Result<Self> {
        let mut tally = Tally::default();
        if let Some(hists) = value["hists"].as_object() {
            for (name, b64) in hists {
                let bytes = BASE64.decode(b64.as_str().context("histogram is not a string")?)?;
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut bytes.as_slice())
                    .context("deserializing a histogram")?;
                tally.hists.insert(name.clone(), h);
            }
        }
        tally.counts = serde_json::from_value(value["counts"].clone()).unwrap_or_default();
        tally.maxima = serde_json::from_value(value["maxima"].clone()).unwrap_or_default();
        tally.events = serde_json::from_value(value["events"].clone()).unwrap_or_default();
        Ok(tally)
    }
}

/// Time a process's threads ran and waited runnable for a CPU, ns, summed from
/// `/proc/<pid>/task/*/schedstat`: the wait says how much other work (another agent's build)
/// kept it from running, which CPU time alone cannot tell.
pub(crate) fn sched_ns(pid: &str) -> Option<(u64, u64)> {
    let mut sum = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let mut fields = stat.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(run)), Some(Ok(wait))) = (fields.next(), fields.next()) {
            sum = (sum.0 + run, sum.1 + wait);
        }
    }
    Some(sum)
}

/// Waited-for-a-CPU ÷ ran, over a window, from two [`sched_ns`] readings.
pub(crate) fn wait_ratio(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((r0, w0), (r1, w1)) = (before?, after?);
    let ran = r1.saturating_sub(r0);
    (ran > 0).then(|| (w1.saturating_sub(w0) as f64 / ran as f64 * 100.0).round() / 100.0)
}

/// This process's CPU (user + system) over the window, as `generator_cpu_ticks`.
pub(crate) async fn own_cpu(clock: Clock, window: Window) -> Tally {
    tokio::time::sleep_until(clock.at(window.from)).await;
    let before = cpu_ticks("self").ok();
    let sched_before = sched_ns("self");
    tokio::time::sleep_until(clock.at(window.to)).await;
    let mut tally = Tally::default();
    if let (Some(a), Ok(b)) = (before, cpu_ticks("self")) {
        tally.count("generator_cpu_ticks", b.saturating_sub(a));
        tally.max("generator_cpu_ticks_busiest_process", b.saturating_sub(a) as f64);
    }
    if let (Some((r0, w0)), Some((r1, w1))) = (sched_before, sched_ns("self")) {
        tally.count("generator_ran_ns", r1.saturating_sub(r0));
        tally.count("generator_waited_ns", w1.saturating_sub(w0));
    }
    tally.count("generator_processes", 1);
    tally
}

/// Generator CPU over the window, in % of one core: all processes, and the busiest one.
pub(crate) fn generator_cpu(tally: &Tally, window: Window) -> Value {
    let percent = |ticks: f64| (ticks / TICKS_PER_SEC / window.seconds() * 1000.0).round() / 10.0;
    json!({
        "cpu_percent": percent(tally.counter("generator_cpu_ticks") as f64),
        "busiest_process_cpu_percent": tally.maximum("generator_cpu_ticks_busiest_process").map(percent),
        "processes": tally.counter("generator_processes"),
        "runqueue_wait_per_run": wait_ratio(Some((0, 0)), Some((tally.counter("generator_ran_ns"), tally.counter("generator_waited_ns")))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_survives_its_json_and_merges() {
        let one = || {
            let mut t = Tally::default();
            t.latency("chat", 12.0);
            t.count("sent", 2);
            t.max("last", 5.0);
            t.event("hand", 3.0, 40.0);
            t
        };
        let mut b = Tally::from_json(&one().into_json().expect("json")).expect("parse");
        b.latency("chat", 30.0);
        let mut c = one();
        c.latency("chat", 20.0);
        b.merge(c).expect("merge");
        let chat = b.hist("chat").expect("chat");
        assert_eq!(chat.len(), 4, "from the JSON, recorded after it, and merged unsettled");
        assert_eq!(chat.value_at_quantile(1.0) / 1000, 30);
        assert_eq!(b.counter("sent"), 4);
        assert_eq!(b.maximum("last"), Some(5.0));
        assert_eq!(b.events("hand"), &[(3.0, 40.0), (3.0, 40.0)]);
    }
}
