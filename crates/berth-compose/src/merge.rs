//! Merging several Compose files, later ones overriding earlier ones.
//!
//! Responsibility: Compose's override rules on the generic tree, before interpolation:
//! mappings merge deeply; scalars and mismatched types are replaced; `command`, `entrypoint` and
//! `healthcheck.test` are replaced whole; `environment`, `labels`, `extra_hosts`, `depends_on` and
//! a service's `networks` merge by key (list forms are turned into mappings first); every other
//! sequence (`ports`, `expose`, `volumes`, `dns`, ...) is concatenated with duplicates removed.
//! `build: DIR` is read as `build: {context: DIR}` so it merges with the long form, and
//! `build.args` and `build.labels` merge by key.

use crate::yaml::Value;

/// Merges `over` into `base`. `path` holds the keys from the document root.
pub(crate) fn merge(base: Value, over: Value, path: &[&str]) -> Value {
    let key = path.last().copied().unwrap_or("");
    let in_service = path.len() == 3 && path[0] == "services";
    if in_service && matches!(key, "command" | "entrypoint") {
        return over;
    }
    if path.len() == 4 && path[0] == "services" && path[2] == "healthcheck" && key == "test" {
        return over;
    }
    let in_build = path.len() == 4 && path[0] == "services" && path[2] == "build";
    let keyed = (in_service
        && matches!(
            key,
            "environment" | "labels" | "extra_hosts" | "depends_on" | "networks"
        ))
        || (in_build && matches!(key, "args" | "labels"));
    let (base, over) = if keyed {
        (to_map(base, key), to_map(over, key))
    } else if in_service && key == "build" {
        (build_map(base), build_map(over))
    } else {
        (base, over)
    };
    match (base, over) {
        (Value::Map(mut entries), Value::Map(over_entries)) => {
            for (k, v) in over_entries {
                if let Some(slot) = entries.iter_mut().find(|(bk, _)| *bk == k) {
                    let old = std::mem::replace(&mut slot.1, Value::Null);
                    let mut sub = path.to_vec();
                    sub.push(&k);
                    slot.1 = merge(old, v, &sub);
                } else {
                    entries.push((k, v));
                }
            }
            Value::Map(entries)
        }
        (Value::Seq(mut items), Value::Seq(over_items)) => {
            for item in over_items {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
            Value::Seq(items)
        }
        (_, over) => over,
    }
}

/// `build: DIR` as `{context: DIR}`; anything else as is.
fn build_map(value: Value) -> Value {
    match value {
        Value::Scalar(..) => Value::Map(vec![("context".to_owned(), value)]),
        other => other,
    }
}

/// Turns the list form of a by-key section into its mapping form; anything else is returned as is.
fn to_map(value: Value, key: &str) -> Value {
    let Value::Seq(items) = value else {
        return value;
    };
    let mut entries: Vec<(String, Value)> = Vec::with_capacity(items.len());
    for item in &items {
        let Some(text) = item.scalar_text() else {
            return Value::Seq(items);
        };
        let (k, v) = match key {
            "environment" | "labels" | "args" => match text.split_once('=') {
                Some((k, v)) => (k.to_owned(), Value::str(v)),
                None => (text.to_owned(), Value::Null),
            },
            "extra_hosts" => match crate::convert::split_host(text) {
                Some((h, ip)) => (h.to_owned(), Value::str(ip)),
                None => return Value::Seq(items),
            },
            "depends_on" => (
                text.to_owned(),
                Value::Map(vec![(
                    "condition".to_owned(),
                    Value::str("service_started"),
                )]),
            ),
            _ => (text.to_owned(), Value::Null),
        };
        entries.retain(|(ek, _)| *ek != k);
        entries.push((k, v));
    }
    Value::Map(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn m(a: &str, b: &str) -> Value {
        merge(parse("a", a).unwrap(), parse("b", b).unwrap(), &[])
    }

    #[test]
    fn rules() {
        let got = m(
            "services:\n  web:\n    image: a\n    command: [x, y]\n    ports: ['80', '81']\n    environment: [A=1, B=2]\n    healthcheck: {test: [CMD, a], interval: 1s}\n",
            "services:\n  web:\n    image: b\n    command: [z]\n    ports: ['81', '82']\n    environment: {B: 3, C: 4}\n    healthcheck: {test: [CMD, b]}\n",
        );
        let want = parse(
            "w",
            "services:\n  web:\n    image: b\n    command: [z]\n    ports: ['80', '81', '82']\n    environment: {A: '1', B: 3, C: 4}\n    healthcheck: {test: [CMD, b], interval: 1s}\n",
        )
        .unwrap();
        assert_eq!(got, want);
    }
}
