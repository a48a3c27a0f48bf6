//! The same scenario, through the real `felhom-agent` binary, against the simulator and
//! against fakepve (an independent fake of the PVE 9 API, see `tests/src/fakepve.rs`), and
//! the agent's results compared where both model the behaviour: the guests list, a guest's
//! config, snapshot create/list/rollback/delete, start/stop state and the set-config report.
//! Both start from the same inventory: fakepve's scenario is given the simulator's configs of
//! CT 100 (running) and CT 101 (stopped). Skips with a printed reason where fakepve is not
//! available (it runs in CI, see `.ci/run`).

use std::path::Path;
use std::time::Duration;

use felhom_agent::config::AgentConfig;
use felhom_agent::pve::PveClient;
use felhom_protocol::Vmid;
use felhom_tests::agent_env::AgentEnv;
use felhom_tests::bins;
use felhom_tests::fakepve::{self, FakePve};
use serde_json::{Value, json};

/// One step of the scenario.
enum Step {
    /// The agent binary's arguments, and what of its `--json` output both backends must
    /// agree on.
    Cli(&'static [&'static str], fn(&Value) -> Value),
    /// The library's snapshot list of a guest (no CLI command lists snapshots): the names,
    /// without Proxmox's `current` entry.
    Snapshots(u32),
}

impl Step {
    fn label(&self) -> String {
        match self {
            Step::Cli(args, _) => format!("{args:?}"),
            Step::Snapshots(vmid) => format!("snapshots of {vmid}"),
        }
    }
}

fn guests(v: &Value) -> Value {
    let list = v.as_array().or_else(|| v["guests"].as_array()).unwrap();
    let mut out: Vec<Value> = list
        .iter()
        .map(|g| json!([g["vmid"], g["name"], g["status"]]))
        .collect();
    out.sort_by_key(|g| g[0].as_u64());
    Value::Array(out)
}

/// The config keys the scenario gives both backends, as the agent reports them.
fn config(v: &Value) -> Value {
    let c = &v["config"]["entries"];
    let keys = [
        "hostname", "memory", "swap", "cores", "onboot", "ostype", "arch", "net0", "rootfs",
    ];
    let mut out = serde_json::Map::new();
    for k in keys {
        let text = match &c[k] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        out.insert(k.into(), json!(text));
    }
    assert!(
        !out.values().all(|t| t == ""),
        "no config keys in the agent's output: {v}"
    );
    json!({"status": v["status"]["status"], "config": out})
}

fn ok_action(v: &Value) -> Value {
    json!([v["ok"], v["action"], v["vmid"], v["task"]["exitstatus"]])
}

fn rollback(v: &Value) -> Value {
    json!([
        v["ok"],
        v["was"],
        v["state"],
        v["start"],
        v["task"]["exitstatus"]
    ])
}

fn set_config(v: &Value) -> Value {
    json!([
        v["ok"],
        v["pending_known"],
        v["applied"],
        v["at_next_start"],
        v["pending"]
    ])
}

const STEPS: &[Step] = &[
    Step::Cli(&["--json", "guests"], guests),
    Step::Cli(&["--json", "guest", "101"], config),
    Step::Cli(&["--json", "snapshot", "create", "100", "cmp1"], ok_action),
    Step::Snapshots(100),
    Step::Cli(&["--json", "snapshot", "rollback", "100", "cmp1"], rollback),
    Step::Cli(&["--json", "guests"], guests),
    Step::Cli(
        &["--json", "snapshot", "rollback", "100", "cmp1", "--start"],
        rollback,
    ),
    Step::Cli(&["--json", "snapshot", "delete", "100", "cmp1"], ok_action),
    Step::Snapshots(100),
    Step::Cli(&["--json", "stop", "100"], ok_action),
    Step::Cli(&["--json", "guests"], guests),
    Step::Cli(&["--json", "start", "100"], ok_action),
    // A running CT: memory hotplugged, hostname in the config at once but read at start,
    // nameserver pending (pve-container `vmconfig_hotplug_pending`).
    Step::Cli(
        &[
            "--json",
            "set-config",
            "100",
            "memory=768",
            "nameserver=192.0.2.53",
            "hostname=web2",
        ],
        set_config,
    ),
    Step::Cli(&["--json", "guest", "100"], config),
    Step::Cli(
        &["--json", "set-config", "101", "memory=512", "cores=2"],
        set_config,
    ),
    Step::Cli(&["--json", "guest", "101"], config),
];

async fn run(config: &Path, label: &str) -> Vec<Value> {
    let settings = AgentConfig::load(Some(config))
        .unwrap()
        .api_settings()
        .unwrap();
    let client = PveClient::new(&settings).unwrap();
    let mut out = Vec::new();
    for step in STEPS {
        let v = match step {
            Step::Cli(args, project) => {
                let r = bins::run_agent(config, args).await;
                assert_eq!(r.code, 0, "{label}: {args:?}\n{}\n{}", r.stdout, r.stderr);
                project(&r.json())
            }
            Step::Snapshots(vmid) => {
                let list = client.snapshots(Vmid::new(*vmid).unwrap()).await.unwrap();
                let mut names: Vec<String> = list
                    .into_iter()
                    .map(|s| s.name)
                    .filter(|n| n != "current")
                    .collect();
                names.sort();
                json!(names)
            }
        };
        out.push(v);
    }
    out
}

/// The simulator's config of `vmid` as a fakepve scenario takes it.
fn scenario_config(sim: &felhom_tests::pve_sim::SimState, vmid: u32) -> Value {
    let mut c = sim.container_config(vmid).unwrap();
    c.remove("digest");
    Value::Object(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reports_the_same_against_the_simulator_and_fakepve() {
    let Some(py) = fakepve::python("the_agent_reports_the_same_against_the_simulator_and_fakepve")
    else {
        return;
    };
    let env = AgentEnv::start(Duration::from_millis(50)).await.unwrap();
    let sim = env.sim.state();
    let sc = fakepve::scenario(json!({
        "containers": [
            {"vmid": 100, "name": "web", "status": "running", "config": scenario_config(&sim, 100)},
            {"vmid": 101, "name": "db", "status": "stopped", "config": scenario_config(&sim, 101)}
        ]
    }));
    let pve = FakePve::start(&py, &sc).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake_config = pve.write_agent_config(dir.path()).unwrap();

    let from_sim = run(&env.config, "simulator").await;
    let from_fake = run(&fake_config, "fakepve").await;
    for (step, v) in STEPS.iter().zip(&from_sim) {
        eprintln!("{}: {v}", step.label());
    }
    let mut differ = Vec::new();
    for ((step, s), f) in STEPS.iter().zip(&from_sim).zip(&from_fake) {
        if s != f {
            differ.push(format!(
                "{}\n  simulator: {s}\n  fakepve:   {f}",
                step.label()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "the agent's results differ:\n{}",
        differ.join("\n")
    );
    assert!(pve.rejections().is_empty(), "{:?}", pve.rejections());
}
