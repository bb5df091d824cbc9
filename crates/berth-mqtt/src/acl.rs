//! Who may publish and subscribe where (docs/messaging.md, "What a client may do"). Pure: the
//! market lookups come in as a closure, so every rule is table-tested without a broker.
//!
//! Rules it keeps:
//! - a topic or filter is allowed only if its first levels are *literally* an allowed prefix
//!   (`teams/T`, ...): a wildcard among those levels (`teams/+/x`, `teams/#`, `#`) could reach
//!   another team's topics, so it is refused; after the prefix anything goes;
//! - nobody publishes under `berth/` (Berth's own events), `$`-topics, or outside its team;
//! - a shared subscription `$share/GROUP/FILTER` is judged by `FILTER`.

use crate::identity::Identity;

/// The subtree of a team's own topics: `teams/{team}/...`.
pub const TEAMS: &str = "teams";
/// Berth's events: `berth/events/{team}/...`, `berth/events/_platform/...`.
pub const EVENTS: [&str; 2] = ["berth", "events"];
/// The `{team}` level of platform-wide events.
pub const PLATFORM: &str = "_platform";

/// Does `levels` start with exactly `prefix` (no wildcard among those levels)? `teams/T` itself
/// is inside `teams/T` (`teams/T/#` matches it too).
fn under(levels: &[&str], prefix: &[&str]) -> bool {
    levels.len() >= prefix.len() && levels.iter().zip(prefix).all(|(l, p)| l == p)
}

fn split(topic: &str) -> Vec<&str> {
    topic.split('/').collect()
}

/// May `who` publish on `topic`?
#[must_use]
pub fn may_publish(who: &Identity, topic: &str) -> bool {
    match who {
        Identity::Team { team, .. } => {
            let levels = split(topic);
            // A wildcard in a topic name is a protocol error the broker refuses anyway.
            !topic.contains(['+', '#']) && under(&levels, &[TEAMS, team])
        }
        // A subscription credential reads its entry's topics only.
        Identity::Market { .. } => false,
    }
}

/// [`may_publish`] for the broker's `user_id` ([`Identity::user_id`]) without parsing it into
/// an [`Identity`]: the check on every publish, without allocating.
#[must_use]
pub fn may_publish_as(user_id: &str, topic: &str) -> bool {
    if user_id.starts_with(crate::identity::MARKET_PREFIX) {
        return false;
    }
    let Some((team, _)) = user_id.split_once('/') else {
        return false;
    };
    berth_core::team::valid_team_name(team)
        && !topic.bytes().any(|b| b == b'+' || b == b'#')
        && topic
            .strip_prefix(TEAMS)
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_prefix(team))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// May `who` subscribe with `filter`? `subscribed(service_global)` answers whether the caller
/// (its team for a team token, its application for a market credential) subscribes to the
/// market entry whose service has that global name.
#[must_use]
pub fn may_subscribe(who: &Identity, filter: &str, subscribed: &dyn Fn(&str) -> bool) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, f)) if !group.is_empty() && !group.contains(['+', '#']) => f,
            _ => return false,
        },
        None => filter,
    };
    let levels = split(filter);
    match who {
        Identity::Team { team, .. } => {
            if under(&levels, &[TEAMS, team]) {
                return true;
            }
            if under(&levels, &[EVENTS[0], EVENTS[1], team])
                || (team == berth_core::team::DEFAULT_TEAM
                    && under(&levels, &[EVENTS[0], EVENTS[1], PLATFORM]))
            {
                return true;
            }
            // Another team's market entry: teams/{provider}/{service}/...
            market_levels(&levels).is_some_and(|(p, s)| {
                berth_core::team::valid_team_name(p)
                    && subscribed(&berth_core::team::global_name(p, s))
            })
        }
        Identity::Market {
            provider, service, ..
        } => {
            under(&levels, &[TEAMS, provider, service])
                && subscribed(&berth_core::team::global_name(provider, service))
        }
    }
}

/// `(provider, service)` of a filter `teams/{provider}/{service}[/...]` whose first three levels
/// are literal.
fn market_levels<'a>(levels: &[&'a str]) -> Option<(&'a str, &'a str)> {
    if levels.len() < 3 || levels[0] != TEAMS {
        return None;
    }
    let (p, s) = (levels[1], levels[2]);
    let literal = |l: &str| !l.is_empty() && !l.contains(['+', '#']);
    (literal(p) && literal(s)).then_some((p, s))
}

/// The topic an event is published on: `berth/events/{team}/{kind}` with `.` in the kind
/// written `/`; platform events (no team) under `_platform`.
#[must_use]
pub fn event_topic(team: Option<&str>, kind: &str) -> String {
    let kind: String = kind
        .chars()
        .map(|c| match c {
            '.' => '/',
            // Not allowed in a topic name: never produced by Berth's kinds, kept safe anyway.
            '+' | '#' | '\0' => '_',
            c => c,
        })
        .collect();
    format!(
        "{}/{}/{}/{kind}",
        EVENTS[0],
        EVENTS[1],
        team.unwrap_or(PLATFORM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(t: &str) -> Identity {
        Identity::Team {
            team: t.into(),
            subject: "alice".into(),
        }
    }

    fn market(p: &str, s: &str, app: &str) -> Identity {
        Identity::Market {
            provider: p.into(),
            service: s.into(),
            app: app.into(),
        }
    }

    #[test]
    fn publish_only_under_own_team() {
        let shop = team("shop");
        for (topic, ok) in [
            ("teams/shop/orders", true),
            ("teams/shop", true),
            ("teams/shop/a/b/c", true),
            ("teams/shopx/orders", false),
            ("teams/other/orders", false),
            ("teams", false),
            ("berth/events/shop/x", false),
            ("berth/anything", false),
            ("$SYS/x", false),
            ("orders", false),
            ("/teams/shop/x", false),
        ] {
            assert_eq!(may_publish(&shop, topic), ok, "{topic}");
        }
        assert!(!may_publish(
            &market("shop", "orders", "web"),
            "teams/shop/orders/x"
        ));
    }

    #[test]
    fn the_publish_fast_path_agrees_with_the_rule() {
        let ids = [
            team("shop"),
            team("default"),
            team("a"),
            Identity::Team {
                team: "shop".into(),
                subject: "x/y:z".into(),
            },
            market("shop", "orders", "buyer/web"),
        ];
        let topics = [
            "teams/shop/orders",
            "teams/shop",
            "teams/shop/",
            "teams/shop/a/b/c",
            "teams/shopx/orders",
            "teams/shop+/x",
            "teams/shop/#",
            "teams/shop/+/x",
            "teams/a",
            "teams/a/b",
            "teams/default/x",
            "teams",
            "teams/",
            "berth/events/shop/x",
            "$SYS/x",
            "/teams/shop/x",
            "",
        ];
        for who in &ids {
            for topic in topics {
                assert_eq!(
                    may_publish_as(&who.user_id(), topic),
                    may_publish(who, topic),
                    "{who:?} {topic}"
                );
            }
        }
        for bad in ["nobody", "Bad_Team/x", "market:", "/x", ""] {
            assert!(!may_publish_as(bad, "teams/x/y"), "{bad}");
        }
    }

    #[test]
    fn subscribe_filters_may_not_reach_other_teams() {
        let shop = team("shop");
        let none = |_: &str| false;
        for (filter, ok) in [
            ("teams/shop/#", true),
            ("teams/shop/+/x", true),
            ("teams/shop", true),
            ("$share/g/teams/shop/#", true),
            ("teams/#", false),
            ("teams/+/x", false),
            ("teams/+", false),
            ("#", false),
            ("+/shop/#", false),
            ("teams/other/#", false),
            ("teams/other/svc/#", false),
            ("$share/g/#", false),
            ("$share/+/teams/shop/#", false),
            ("$share//teams/shop/#", false),
            ("$SYS/#", false),
            ("berth/events/shop/#", true),
            ("berth/events/shop/app/deployed", true),
            ("berth/events/+/#", false),
            ("berth/events/#", false),
            ("berth/events/_platform/#", false),
            ("berth/events/other/#", false),
        ] {
            assert_eq!(may_subscribe(&shop, filter, &none), ok, "{filter}");
        }
        // The default team (the administrators') also reads platform events.
        assert!(may_subscribe(
            &team("default"),
            "berth/events/_platform/#",
            &none
        ));
    }

    #[test]
    fn market_subscribers_read_their_entry() {
        let buyer = team("buyer");
        let subscribed = |s: &str| s == "shop/orders";
        assert!(may_subscribe(&buyer, "teams/shop/orders/#", &subscribed));
        assert!(may_subscribe(&buyer, "teams/shop/orders/new", &subscribed));
        assert!(!may_subscribe(&buyer, "teams/shop/stock/#", &subscribed));
        assert!(!may_subscribe(&buyer, "teams/shop/#", &subscribed));
        assert!(!may_subscribe(&buyer, "teams/shop/+/new", &subscribed));
        assert!(!may_publish(&buyer, "teams/shop/orders/new"));
        // Team `default`'s services are global names without a team part.
        let default_entry = |s: &str| s == "orders";
        assert!(may_subscribe(
            &buyer,
            "teams/default/orders/#",
            &default_entry
        ));

        let cred = market("shop", "orders", "buyer/web");
        assert!(may_subscribe(&cred, "teams/shop/orders/#", &subscribed));
        assert!(!may_subscribe(&cred, "teams/shop/stock/#", &|_| true));
        assert!(!may_subscribe(&cred, "teams/buyer/#", &|_| true));
        assert!(!may_subscribe(&cred, "teams/shop/orders/#", &|_| false));
    }

    #[test]
    fn event_topics() {
        assert_eq!(
            event_topic(Some("shop"), "image.removed"),
            "berth/events/shop/image/removed"
        );
        assert_eq!(
            event_topic(None, "janitor.builds_interrupted"),
            "berth/events/_platform/janitor/builds_interrupted"
        );
        assert_eq!(event_topic(Some("a"), "x+#"), "berth/events/a/x__");
    }
}
