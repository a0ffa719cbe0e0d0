//! `webhooks/*.yaml` must equal what the route table generates.
//! Regenerate with `UPDATE_WEBHOOKS=1 cargo test --test admission_configs`.

use std::path::Path;

use spin_operator::admission::config;
use spin_operator::admission::routes::ROUTES;

#[test]
fn committed_webhook_configurations_match_the_route_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks");
    let update = std::env::var_os("UPDATE_WEBHOOKS").is_some();
    for (name, generated) in config::files().unwrap() {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        pretty_assertions::assert_eq!(
            committed,
            generated,
            "{name} drifted from the route table; run UPDATE_WEBHOOKS=1 cargo test --test admission_configs"
        );
    }
}

#[test]
fn every_registered_route_path_appears_in_the_files() {
    let files = config::files().unwrap();
    let all: String = files.iter().map(|(_, text)| text.as_str()).collect();
    for route in ROUTES {
        assert_eq!(
            all.contains(route.path),
            route.registered,
            "{} registered={}",
            route.path,
            route.registered
        );
    }
}
