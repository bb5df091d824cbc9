//! A load client for `bench/mqtt_bench.py` (docs/benchmarks.md §10): one publisher, N
//! subscribers on one topic, against any MQTT broker. Prints one JSON line: deliveries per
//! second (publish → deliver, every subscriber counted) and the delivery latency's p50/p99.
//!
//! `--rate 0` floods (throughput); `--rate R` publishes R messages a second (latency). Each
//! payload starts with the send time (nanoseconds since the client started), so latency is
//! measured on one clock. QoS 1 publishes keep `--window` acknowledgements outstanding.
//!
//! ```sh
//! cargo run --release -p berth-mqtt --example mqtt_load -- --addr 127.0.0.1:1883 \
//!     --qos 1 --subs 100 --messages 2000 --rate 0 [--user U --password TOKEN] [--topic T]
//! ```

use mqtt5::{ConnectOptions, MqttClient, QoS, SubscribeOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    addr: String,
    user: Option<String>,
    password: Option<String>,
    topic: String,
    qos: u8,
    subs: usize,
    messages: usize,
    rate: u64,
    payload: usize,
    window: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:1883".into(),
        user: None,
        password: None,
        topic: "teams/default/bench".into(),
        qos: 0,
        subs: 1,
        messages: 1000,
        rate: 0,
        payload: 64,
        window: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--addr" => a.addr = val()?,
            "--user" => a.user = Some(val()?),
            "--password" => a.password = Some(val()?),
            "--topic" => a.topic = val()?,
            "--qos" => a.qos = u8::try_from(num(val()?)?).map_err(|e| e.to_string())?,
            "--subs" => a.subs = usize::try_from(num(val()?)?).map_err(|e| e.to_string())?,
            "--messages" => {
                a.messages = usize::try_from(num(val()?)?).map_err(|e| e.to_string())?
            }
            "--rate" => a.rate = num(val()?)?,
            "--payload" => {
                a.payload = usize::try_from(num(val()?)?)
                    .map_err(|e| e.to_string())?
                    .max(8)
            }
            "--window" => {
                a.window = usize::try_from(num(val()?)?)
                    .map_err(|e| e.to_string())?
                    .max(1)
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn options(a: &Args, id: String) -> ConnectOptions {
    let o = ConnectOptions::new(id).with_clean_start(true);
    match (&a.user, &a.password) {
        (Some(u), Some(p)) => o.with_credentials(u.clone(), p.as_bytes()),
        _ => o,
    }
}

#[tokio::main]
async fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mqtt_load: {e}");
            std::process::exit(2);
        }
    };
    let qos = if a.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let url = format!("mqtt://{}", a.addr);
    let t0 = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(a.subs * a.messages)));
    let pid = std::process::id();
    let mut subs = Vec::new();
    for i in 0..a.subs {
        let c = MqttClient::new(format!("load-sub-{pid}-{i}"));
        if let Err(e) = c
            .connect_with_options(&url, options(&a, format!("load-sub-{pid}-{i}")))
            .await
        {
            eprintln!("mqtt_load: subscriber {i} cannot connect: {e}");
            std::process::exit(1);
        }
        let (d, l) = (delivered.clone(), latencies.clone());
        let sub = c
            .subscribe_with_options(
                a.topic.clone(),
                SubscribeOptions {
                    qos,
                    ..Default::default()
                },
                move |m| {
                    if m.payload.len() >= 8 {
                        let sent = u64::from_le_bytes(m.payload[..8].try_into().unwrap_or([0; 8]));
                        let now = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        l.lock().unwrap().push(now.saturating_sub(sent));
                    }
                    d.fetch_add(1, Ordering::Relaxed);
                },
            )
            .await;
        if let Err(e) = sub {
            eprintln!("mqtt_load: subscriber {i} cannot subscribe: {e}");
            std::process::exit(1);
        }
        subs.push(c);
    }
    let publisher = Arc::new(MqttClient::new(format!("load-pub-{pid}")));
    if let Err(e) = publisher
        .connect_with_options(&url, options(&a, format!("load-pub-{pid}")))
        .await
    {
        eprintln!("mqtt_load: the publisher cannot connect: {e}");
        std::process::exit(1);
    }
    let window = Arc::new(tokio::sync::Semaphore::new(a.window));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..a.messages {
        if let Some(at) = (i as u64 * 1_000_000_000).checked_div(a.rate) {
            tokio::time::sleep_until((start + Duration::from_nanos(at)).into()).await;
        }
        let mut payload = vec![0u8; a.payload];
        let now = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        payload[..8].copy_from_slice(&now.to_le_bytes());
        if qos == QoS::AtMostOnce {
            let _ = publisher.publish_qos(a.topic.clone(), payload, qos).await;
        } else {
            let permit = window.clone().acquire_owned().await.expect("semaphore");
            let p = publisher.clone();
            let topic = a.topic.clone();
            tasks.push(tokio::spawn(async move {
                let _ = p.publish_qos(topic, payload, qos).await;
                drop(permit);
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let published = start.elapsed();
    let expected = (a.subs * a.messages) as u64;
    // Wait for the deliveries: until all arrived, or nothing more for 2 s.
    let mut last = delivered.load(Ordering::Relaxed);
    let mut idle = Instant::now();
    while last < expected && idle.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            idle = Instant::now();
        }
    }
    let lats = latencies.lock().unwrap().clone();
    let done = if last >= expected {
        start.elapsed()
    } else {
        idle.duration_since(start).max(published)
    };
    let mut ms: Vec<f64> = lats.iter().map(|n| *n as f64 / 1e6).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if ms.is_empty() {
            return f64::NAN;
        }
        ms[((ms.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "{{\"qos\":{},\"subs\":{},\"messages\":{},\"rate\":{},\"delivered\":{},\"expected\":{},\"secs\":{:.3},\"deliveries_per_sec\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        a.qos,
        a.subs,
        a.messages,
        a.rate,
        last,
        expected,
        done.as_secs_f64(),
        last as f64 / done.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    let _ = publisher.disconnect().await;
    for s in subs {
        let _ = s.disconnect().await;
    }
}
