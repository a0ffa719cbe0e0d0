//! The committed `crds/` are exactly what `spin-operator crds` generates from the Rust types.

use std::path::Path;

#[test]
fn committed_crds_match_generated() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    committed.sort();
    let mut generated: Vec<String> = spin_operator::crd::all()
        .iter()
        .map(|(file, _)| file.to_string())
        .collect();
    generated.sort();
    assert_eq!(
        committed, generated,
        "crds/ holds other files than generated"
    );
    for (file, crd) in spin_operator::crd::all() {
        let expected = spin_operator::crd::to_yaml(&crd).unwrap();
        let actual = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            actual == expected,
            "crds/{file} is stale: run `cargo run -- crds --out-dir crds`"
        );
    }
}

#[test]
fn crds_command_prints_both_documents() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spin-operator"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, spin_operator::crd::all_yaml().unwrap());
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "spinapps.core.spinkube.dev",
            "spinappexecutors.core.spinkube.dev"
        ]
    );
}
